/* resultcode: the marketplace's result codes (spec §5) by name, for every process that decides
 * or checks one. The wire form is the string; compare with strcmp, never by pointer. */
#ifndef KOOISV_RESULTCODE_H
#define KOOISV_RESULTCODE_H

#define RC_OK "000000"          /* success (the only one) */
#define RC_AUTH "000001"        /* authentication failed (signature, replay) */
#define RC_INVALID "000002"     /* invalid parameter, stale timestamp, impossible transition */
#define RC_NO_INSTANCE "000003" /* instance does not exist (for this testFlag) */
#define RC_BUSY "000004"        /* being processed: a concurrent retry would be harmful */
#define RC_INTERNAL "000005"    /* internal error: a dependency is unavailable; retry */
#define RC_NO_RESOURCE "000100" /* no instance resource available */
#define RC_SECRET_UNREADABLE "000101" /* clientSecret could not be decrypted */

#endif
