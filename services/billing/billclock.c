/* billclock: the wall clock plus a test offset read from a file. */
#include "billclock.h"

#include <stdio.h>
#include <stdlib.h>

#include "timeutil.h"

static char offset_path[1024];

void billclock_init(const char *offset_file)
{
    snprintf(offset_path, sizeof offset_path, "%s", offset_file ? offset_file : "");
}

int64_t billclock_offset_ms(void)
{
    if (!offset_path[0])
        return 0;
    FILE *f = fopen(offset_path, "r");
    if (!f)
        return 0;
    char buf[64];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *end;
    long long s = strtoll(buf, &end, 10);
    while (*end == '\n' || *end == ' ' || *end == '\r')
        end++;
    if (end == buf || *end != '\0' || s < -3153600000LL || s > 3153600000LL)
        return 0; /* a half-written or bad file is no offset */
    return s * 1000;
}

int64_t billclock_now_ms(void)
{
    return time_now_ms() + billclock_offset_ms();
}
