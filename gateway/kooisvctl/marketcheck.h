/* marketcheck: `kooisvctl market check`, the seller console's debugging cases run against a
 * deployment through its production URL: a purchase of each debug order of spec §6 through
 * provisioning to appInfo, the changes on an instance (trial to formal, renewal, unsubscribe,
 * change, change check, freeze and unfreeze, license), each kit sync, and the refusals sellers
 * get wrong (bad signature, stale timestamp, replay, repeated newInstance, release twice). Ids
 * are fresh per run, so it can run again against the same deployment. */
#ifndef KOOISV_MARKETCHECK_H
#define KOOISV_MARKETCHECK_H

/* argv[0] is "check"; prints the table (or --json) and returns the exit status: 0 when no case
 * failed, 1 when one did, 2 usage. */
int marketcheck_main(int argc, char **argv);

#endif
