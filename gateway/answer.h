/* answer: the JSON the marketplace receives. Always {"resultCode","resultMsg", call fields...},
 * compact, raw UTF-8 (no \u escapes), and signed over the exact bytes sent (Body-Sign). */
#ifndef KOOISV_ANSWER_H
#define KOOISV_ANSWER_H
#include <stddef.h>
#include "envelope.pb-c.h"
#include "resultcode.h"

struct evhttp_request;

/* True for the result codes of spec §5. */
int answer_code_known(const char *code);
/* The answer body for code/msg; with code RC_OK the call's fields are taken from reply
 * (newInstance -> instanceId; queryInstance -> info[] and encryptType). reply may be NULL.
 * Caller owns the result. */
char *answer_render(const char *code, const char *msg, const Kooisv__Reply *reply);
/* Send body with HTTP status, Content-Type application/json;charset=UTF-8, Body-Sign computed
 * with key over the exact bytes, and X-Request-Id rid (if not NULL); close asks the client to
 * close the connection afterwards. */
void answer_send(struct evhttp_request *req, int status, const char *body, size_t len,
                 const char *key, const char *rid, int close);

#endif
