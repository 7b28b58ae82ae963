/* envbody: the message an envelope carries in its oneof body, and its fields by their .proto
 * names, reached through protobuf-c's descriptors: the request modules (basicreq, kitsync)
 * create, fill, read and free any body with one piece of code rather than one per message. */
#ifndef KOOISV_ENVBODY_H
#define KOOISV_ENVBODY_H
#include <stdint.h>
#include <stdbool.h>
#include <stddef.h>
#include "envelope.pb-c.h"
#include "resref.h"

/* A new, initialised message of the type the oneof case body_case carries; the caller owns it
 * (envbody_attach, or protobuf_c_message_free_unpacked). */
ProtobufCMessage *envbody_message_new(Kooisv__Envelope__BodyCase body_case);
/* A new, initialised message of the oneof case body_case, set as env's body; env owns it. */
ProtobufCMessage *envbody_new(Kooisv__Envelope *env, Kooisv__Envelope__BodyCase body_case);
/* Set m (of body_case's message type) as env's body; env takes ownership of m. */
void envbody_attach(Kooisv__Envelope *env, Kooisv__Envelope__BodyCase body_case,
                    ProtobufCMessage *m);
/* Free env's body message with everything it holds and unset the case (no-op without one). */
void envbody_free(Kooisv__Envelope *env);
/* env's body message (borrowed), or NULL when its case is not set. */
const ProtobufCMessage *envbody_get(const Kooisv__Envelope *env);
/* A new, initialised message appended to m's repeated message field named field (which must
 * exist, as below); m owns it. */
ProtobufCMessage *envbody_add_entry(ProtobufCMessage *m, const char *field);
/* True when m's message type has a field named field. */
bool envbody_has_field(const ProtobufCMessage *m, const char *field);
/* Set m's string field named field to a copy of s ("" for NULL), freeing the copy it held; m
 * owns the copy. The field must exist and be a string (asserted: a name is the programmer's;
 * in a release build a wrong name is logged and the setters and getters below do nothing and
 * return NULL). */
void envbody_set_string(ProtobufCMessage *m, const char *field, const char *s);
/* Set m's int32 field named field to v (which must exist, as above). */
void envbody_set_int32(ProtobufCMessage *m, const char *field, int32_t v);
/* m's string field named field (borrowed; which must exist, as above). */
const char *envbody_string(const ProtobufCMessage *m, const char *field);

/* A resource an audit record names: its kind and the body's string field holding its id. */
typedef struct {
    const char *kind;
    const char *field;
} envbody_ref_t;

/* Append to *res (resref_add) the resources refs name in env's body (refs ends with a kind
 * NULL; NULL names none). */
void envbody_add_refs(const Kooisv__Envelope *env, const envbody_ref_t *refs,
                      Kooisv__ResourceRef ***res, size_t *n);

#endif
