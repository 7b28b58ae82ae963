/* ktest_shell: see ktest_shell.h. */
#include "ktest_shell.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <sys/wait.h>

int ktest_shell_first_line(const char *cmd, char *line, size_t len)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    line[0] = '\0';
    if (!fgets(line, (int)len, p))
        line[0] = '\0';
    char rest[256];
    while (fgets(rest, sizeof rest, p))
        ;
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
