#include "envbody.h"

#include <assert.h>
#include <stdlib.h>

#include "jsonfield.h"
#include "log.h"
#include "xmalloc.h"

/* The envelope's member for body_case: the oneof members are fields numbered by the cases. */
static ProtobufCMessage **body_slot(const Kooisv__Envelope *env,
                                    Kooisv__Envelope__BodyCase body_case,
                                    const ProtobufCMessageDescriptor **desc)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&kooisv__envelope__descriptor, body_case);
    if (!f)
        return NULL;
    if (desc)
        *desc = f->descriptor;
    return (ProtobufCMessage **)((char *)env + f->offset);
}

/* m's field named field, of type type, repeated or not; a wrong name is the programmer's
 * (asserted), and NULL in a release build, where the callers then do nothing. */
static const ProtobufCFieldDescriptor *field_of(const ProtobufCMessage *m, const char *field,
                                                ProtobufCType type, bool repeated)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field);
    bool ok = f && f->type == type && (f->label == PROTOBUF_C_LABEL_REPEATED) == repeated;
    assert(ok);
    if (!ok)
        log_error(NULL, "envbody: %s has no field %s of the type asked", m->descriptor->name,
                  field);
    return ok ? f : NULL;
}

/* Where m keeps its single field named field of type type (NULL as above). */
static void *field_at(const ProtobufCMessage *m, const char *field, ProtobufCType type)
{
    const ProtobufCFieldDescriptor *f = field_of(m, field, type, false);
    return f ? (char *)m + f->offset : NULL;
}

/* A new, initialised message of type desc. */
static ProtobufCMessage *message_new(const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *m = xmalloc(desc->sizeof_message);
    protobuf_c_message_init(desc, m);
    return m;
}

ProtobufCMessage *envbody_message_new(Kooisv__Envelope__BodyCase body_case)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&kooisv__envelope__descriptor, body_case);
    assert(f && f->type == PROTOBUF_C_TYPE_MESSAGE);
    return message_new(f->descriptor);
}

ProtobufCMessage *envbody_new(Kooisv__Envelope *env, Kooisv__Envelope__BodyCase body_case)
{
    ProtobufCMessage *m = envbody_message_new(body_case);
    envbody_attach(env, body_case, m);
    return m;
}

void envbody_attach(Kooisv__Envelope *env, Kooisv__Envelope__BodyCase body_case,
                    ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *desc = NULL;
    ProtobufCMessage **slot = body_slot(env, body_case, &desc);
    assert(slot && m->descriptor == desc);
    *slot = m;
    env->body_case = body_case;
}

void envbody_free(Kooisv__Envelope *env)
{
    ProtobufCMessage **slot = body_slot(env, env->body_case, NULL);
    if (!slot)
        return;
    protobuf_c_message_free_unpacked(*slot, NULL);
    *slot = NULL;
    env->body_case = KOOISV__ENVELOPE__BODY__NOT_SET;
}

const ProtobufCMessage *envbody_get(const Kooisv__Envelope *env)
{
    ProtobufCMessage **slot = body_slot(env, env->body_case, NULL);
    return slot ? *slot : NULL;
}

ProtobufCMessage *envbody_add_entry(ProtobufCMessage *m, const char *field)
{
    /* protobuf-c keeps a repeated message field as an array of pointers and its count */
    const ProtobufCFieldDescriptor *f = field_of(m, field, PROTOBUF_C_TYPE_MESSAGE, true);
    if (!f)
        return NULL;
    size_t *n = (size_t *)((char *)m + f->quantifier_offset);
    ProtobufCMessage ***entries = (ProtobufCMessage ***)((char *)m + f->offset);
    ProtobufCMessage *entry = message_new(f->descriptor);
    *entries = xrealloc(*entries, (*n + 1) * sizeof **entries);
    (*entries)[(*n)++] = entry;
    return entry;
}

bool envbody_has_field(const ProtobufCMessage *m, const char *field)
{
    return protobuf_c_message_descriptor_get_field_by_name(m->descriptor, field) != NULL;
}

void envbody_set_string(ProtobufCMessage *m, const char *field, const char *s)
{
    char **at = field_at(m, field, PROTOBUF_C_TYPE_STRING);
    if (!at)
        return;
    if (*at != protobuf_c_empty_string) /* set before: the message owns that copy too */
        free(*at);
    *at = jsonfield_copy(s);
}

void envbody_set_int32(ProtobufCMessage *m, const char *field, int32_t v)
{
    int32_t *at = field_at(m, field, PROTOBUF_C_TYPE_INT32);
    if (at)
        *at = v;
}

const char *envbody_string(const ProtobufCMessage *m, const char *field)
{
    const char *const *at = field_at(m, field, PROTOBUF_C_TYPE_STRING);
    return at ? *at : NULL;
}

void envbody_add_refs(const Kooisv__Envelope *env, const envbody_ref_t *refs,
                      Kooisv__ResourceRef ***res, size_t *n)
{
    const ProtobufCMessage *m = envbody_get(env);
    for (size_t i = 0; m && refs && refs[i].kind; i++)
        resref_add(res, n, refs[i].kind, envbody_string(m, refs[i].field));
}
