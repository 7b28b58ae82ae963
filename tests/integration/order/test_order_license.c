/* getLicenseAsync end to end through the gateway's HTTPS (spec §3): every time form the spec
 * lists read as UTC and stored to the millisecond, other zones refused; licenses signed with
 * Ed25519 that verify offline with the public key from GET /v1/license/pubkey, from
 * `kooisvctl license verify` and from the README's openssl command; a license issued before
 * (HMAC, KL1) kept unchanged for repeats. Needs the `suite` fixture. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "cryptoutil.h"
#include "licensesig.h"
#include "order_support.h"
#include "xmalloc.h"

#define PROVISION_WAIT_MS 20000

/* The SHA-256 of a device fingerprint in hex, as order stores and signs it. */
static void fingerprint_hex(const char *fingerprint, char out[65])
{
    uint8_t d[32];
    sha256(fingerprint, strlen(fingerprint), d);
    hex_encode(d, sizeof d, out);
}

/* getLicenseAsync of id for event and device fingerprint, answered 000000. */
static void get_license(const char *id, const char *event, const char *effective,
                        const char *fingerprint)
{
    kresp_t r;
    ot_expect("000000", &r, "{s:s, s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync",
              "instanceId", id, "eventId", event, "effectiveTime", effective, "expireTime",
              "20270101000000", "deviceFingerprint", fingerprint);
    kresp_free(&r);
}

/* Number of licenses stored for instance id. */
static long license_count(const char *id)
{
    const char *p[] = {id};
    return kc_sql_count("SELECT 1 FROM orders.licenses WHERE instance_id = $1", 1, p);
}

/* The stored license of (id, event, fingerprint), or NULL; caller frees. */
static char *stored_license(const char *id, const char *event, const char *fingerprint)
{
    char fp[65];
    fingerprint_hex(fingerprint, fp);
    const char *p[] = {id, event, fp};
    return kc_sql_value("SELECT license FROM orders.licenses"
                        " WHERE instance_id = $1 AND event_id = $2 AND fingerprint_sha256 = $3",
                        3, p);
}

/* The public key as the admin API gives it (auditor token); caller frees. */
static char *public_key(void)
{
    kresp_t r;
    assert_int_equal(
        kc_admin("GET", "/v1/license/pubkey", suite_get("KOOISV_AUDITOR_TOKEN"), NULL, &r), 0);
    if (r.status != 200)
        fail_msg("GET /v1/license/pubkey: HTTP %d %s", r.status, r.body);
    assert_string_equal(json_string_value(json_object_get(r.json, "algorithm")), "Ed25519");
    assert_string_equal(json_string_value(json_object_get(r.json, "format")), "KL2");
    const char *pem = json_string_value(json_object_get(r.json, "publicKey"));
    assert_non_null(pem);
    char *copy = xstrdup(pem);
    kresp_free(&r);
    return copy;
}

static void test_time_forms(void **state)
{
    (void)state;
    char *id = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    static const struct {
        const char *time;
        const char *ms;
    } forms[] = {
        {"2023-10-27 10:30:15 z", "1698402615000"},   {"2023-10-27 10:30:15 Z", "1698402615000"},
        {"2023-10-27 10:30:15 UTC", "1698402615000"}, {"20231027103015", "1698402615000"},
        {"20231027103015123", "1698402615123"},
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char event[32];
        snprintf(event, sizeof event, "ev-form-%zu", i);
        kresp_t r;
        ot_basic(&r, "{s:s, s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync", "instanceId", id,
                 "eventId", event, "effectiveTime", forms[i].time, "expireTime", forms[i].time);
        if (strcmp(r.code, "000000") != 0)
            fail_msg("%s: %s %s", forms[i].time, r.code,
                     json_string_value(json_object_get(r.json, "resultMsg")));
        kresp_free(&r);
        const char *p[] = {id, event};
        char *eff =
            kc_sql_value("SELECT (extract(epoch FROM effective_time) * 1000)::bigint || ' ' ||"
                         " (extract(epoch FROM expire_time) * 1000)::bigint FROM orders.licenses"
                         " WHERE instance_id = $1 AND event_id = $2",
                         2, p);
        char *want = xasprintf("%s %s", forms[i].ms, forms[i].ms);
        if (!eff || strcmp(eff, want) != 0)
            fail_msg("%s stored as %s, want %s", forms[i].time, eff ? eff : "(none)", want);
        free(eff);
        free(want);
    }
    /* Another zone, or none: refused with a reason naming the field. */
    static const char *const other_zone[] = {"2023-10-27 10:30:15 +08:00",
                                             "2023-10-27 10:30:15 CST", "2023-10-27 10:30:15"};
    for (size_t i = 0; i < sizeof other_zone / sizeof *other_zone; i++) {
        kresp_t r;
        ot_expect("000002", &r, "{s:s, s:s, s:s, s:s}", "activity", "getLicenseAsync", "instanceId",
                  id, "eventId", "ev-zone", "effectiveTime", other_zone[i]);
        const char *msg = json_string_value(json_object_get(r.json, "resultMsg"));
        if (!msg || !strstr(msg, "effectiveTime must end in the zone z, Z or UTC"))
            fail_msg("%s: message %s", other_zone[i], msg ? msg : "(none)");
        kresp_free(&r);
    }
    const char *p[] = {id};
    assert_int_equal(kc_sql_count("SELECT 1 FROM orders.licenses"
                                  " WHERE instance_id = $1 AND event_id = 'ev-zone'",
                                  1, p),
                     0);
    free(id);
}

/* The README's offline check: openssl pkeyutl over the text before the second dot. */
static int openssl_verify(const char *pem, const char *license)
{
    char dir[] = "/tmp/kooisv-license-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *pub = xasprintf("%s/license-public.pem", dir), *lic = xasprintf("%s/license", dir);
    FILE *f = fopen(pub, "w");
    fputs(pem, f);
    fclose(f);
    f = fopen(lic, "w");
    fputs(license, f);
    fclose(f);
    char *cmd =
        xasprintf("cd '%s' && lic=$(cat license) && printf %%s \"${lic%%.*}\" >signed.bin &&"
                  " printf '%%s==' \"${lic##*.}\" | tr '_-' '/+' | base64 -d >sig.bin &&"
                  " openssl pkeyutl -verify -pubin -inkey license-public.pem -rawin -in signed.bin"
                  " -sigfile sig.bin >/dev/null 2>&1",
                  dir);
    int st = system(cmd);
    char *rm = xasprintf("rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(cmd);
    free(pub);
    free(lic);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The README's C example ("Licenses"), verbatim but for static. */
/* 1 when license (KL2) is signed by the Ed25519 public key in pem_file, else 0. */
static int license_valid(const char *license, const char *pem_file)
{
    const char *dot = strrchr(license, '.');
    char b64[89] = {0};
    unsigned char sig[66];
    if (strncmp(license, "KL2.", 4) != 0 || !dot || strlen(dot + 1) != 86)
        return 0;
    for (int i = 0; i < 86; i++) /* base64url -> base64 */
        b64[i] = dot[1 + i] == '-' ? '+' : dot[1 + i] == '_' ? '/' : dot[1 + i];
    memcpy(b64 + 86, "==", 2);
    if (EVP_DecodeBlock(sig, (const unsigned char *)b64, 88) != 66) /* 64 bytes + padding */
        return 0;
    FILE *f = fopen(pem_file, "r");
    EVP_PKEY *key = f ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = key && EVP_PKEY_id(key) == EVP_PKEY_ED25519 && ctx &&
             EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
             EVP_DigestVerify(ctx, sig, 64, (const unsigned char *)license,
                              (size_t)(dot - license)) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok;
}

static void test_signed_license(void **state)
{
    (void)state;
    char *id = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    for (int i = 0; i < 2; i++)
        get_license(id, "ev-sig", "2026-01-01 00:00:00 z", "fp-A");
    char *license = stored_license(id, "ev-sig", "fp-A");
    assert_non_null(license);
    assert_memory_equal(license, "KL2.", 4);
    char *pem = public_key();

    json_t *payload = NULL;
    char why[256] = "";
    if (licensesig_verify(pem, license, &payload, why, sizeof why) != 0)
        fail_msg("license does not verify: %s", why);
    char fp[65];
    fingerprint_hex("fp-A", fp);
    assert_string_equal(json_string_value(json_object_get(payload, "iid")), id);
    assert_string_equal(json_string_value(json_object_get(payload, "eid")), "ev-sig");
    assert_string_equal(json_string_value(json_object_get(payload, "fp")), fp);
    assert_int_equal(json_integer_value(json_object_get(payload, "eff")), 1767225600000LL);
    assert_int_equal(json_integer_value(json_object_get(payload, "exp")), 1798761600000LL);
    json_decref(payload);

    /* The operator's and the README's ways agree; a changed license fails all three. */
    assert_int_equal(openssl_verify(pem, license), 0);
    char *out = NULL;
    assert_int_equal(kc_ctl(&out, NULL, (const char *const[]){"license", "verify", license, NULL}),
                     0);
    assert_non_null(strstr(out, "\"iid\""));
    free(out);
    assert_int_equal(kc_ctl(&out, license, (const char *const[]){"license", "verify", "-", NULL}),
                     0);
    free(out);
    assert_int_equal(kc_ctl(&out, NULL, (const char *const[]){"license", "pubkey", NULL}), 0);
    assert_string_equal(out, pem);
    free(out);
    const char *keyfile = suite_get("KOOISV_LICENSE_PUBLIC_KEY_FILE");
    assert_non_null(keyfile);
    assert_int_equal(
        kc_ctl(NULL, NULL,
               (const char *const[]){"license", "verify", "--pubkey", keyfile, license, NULL}),
        0);

    char *tampered = xstrdup(license);
    size_t at = strlen(tampered) - 3;
    tampered[at] = tampered[at] == 'A' ? 'B' : 'A';
    assert_int_not_equal(licensesig_verify(pem, tampered, NULL, why, sizeof why), 0);
    assert_int_not_equal(openssl_verify(pem, tampered), 0);
    assert_int_equal(license_valid(tampered, keyfile), 0);
    assert_int_equal(kc_ctl(NULL, NULL, (const char *const[]){"license", "verify", tampered, NULL}),
                     1);
    assert_int_equal(kc_ctl(NULL, tampered, (const char *const[]){"license", "verify", "-", NULL}),
                     1);
    free(tampered);
    assert_int_equal(kc_ctl(NULL, NULL,
                            (const char *const[]){"license", "verify", "--pubkey",
                                                  "/nonexistent.pem", license, NULL}),
                     1);
    assert_int_equal(kc_ctl(NULL, NULL, (const char *const[]){"license", "verify", NULL}), 2);

    /* The repeat kept the first license: one row, the same text. */
    assert_int_equal(license_count(id), 1);
    free(license);
    free(pem);
    free(id);
}

/* A license issued before Ed25519 signing (an HMAC "KL1." token) stays the answer's license:
 * a repeat with the same eventId and fingerprint neither replaces nor adds one. */
static void test_hmac_license_kept(void **state)
{
    (void)state;
    char *id = ot_provisioned(NULL, NULL, PROVISION_WAIT_MS);
    char fp[65];
    fingerprint_hex("fp-old", fp);
    const char *old = "KL1.eyJlZmYiOjE3NjcyMjU2MDAwMDB9."
                      "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const char *ins[] = {id, fp, old};
    assert_int_equal(kc_sql_exec("INSERT INTO orders.licenses (instance_id, event_id,"
                                 " fingerprint_sha256, device_fingerprint, effective_time, license)"
                                 " VALUES ($1, 'ev-old', $2, 'fp-old', now(), $3)",
                                 3, ins),
                     1);
    get_license(id, "ev-old", "20260101000000", "fp-old");
    char *kept = stored_license(id, "ev-old", "fp-old");
    assert_non_null(kept);
    assert_string_equal(kept, old);
    free(kept);
    assert_int_equal(license_count(id), 1);
    /* kooisvctl names the format rather than calling it forged. */
    assert_int_equal(kc_ctl(NULL, NULL, (const char *const[]){"license", "verify", old, NULL}), 1);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_forms),
        cmocka_unit_test(test_signed_license),
        cmocka_unit_test(test_hmac_license_kept),
    };
    return KC_SUITE_MAIN(tests, NULL, NULL);
}
