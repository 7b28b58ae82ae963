/* sortid: ids that sort by when they were made, for what a run or a test creates (kooisvctl
 * market check's run id; the integration tests' ids through kclient). */
#ifndef KOOISV_SORTID_H
#define KOOISV_SORTID_H

/* Write 16 characters of [0-9A-Z] plus a terminator into out: 9 base-36 digits of the time in
 * ms (ids sort by creation), then 7 random ones. */
void sortid_make(char out[17]);

#endif
