/* sortid: time-ordered ids (see sortid.h). */
#include "sortid.h"

#include "randutil.h"
#include "timeutil.h"

void sortid_make(char out[17])
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    unsigned long long ms = (unsigned long long)time_now_ms();
    for (int i = 8; i >= 0; i--) { /* the time first: ids sort by when they were made */
        out[i] = digits[ms % 36];
        ms /= 36;
    }
    unsigned char r[7];
    rand_bytes(r, sizeof r);
    for (int i = 0; i < 7; i++)
        out[9 + i] = digits[r[i] % 36];
    out[16] = '\0';
}
