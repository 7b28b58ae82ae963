/* ktest_shell: run a shell command from a test and keep what a check of a process's start needs
 * (its exit status and the first line it wrote). */
#ifndef KOOISV_KTEST_SHELL_H
#define KOOISV_KTEST_SHELL_H
#include <stddef.h>

/* Run cmd with /bin/sh and read its standard output to the end: the first line (newline kept,
 * cut to len - 1 bytes) into line, "" when it wrote nothing. Returns its exit status, -1 when it
 * did not exit normally. Fails the test when the command cannot be started. */
int ktest_shell_first_line(const char *cmd, char *line, size_t len);

#endif
