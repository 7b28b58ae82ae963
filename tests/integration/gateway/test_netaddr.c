/* Unit tests of netaddr (no suite): IP addresses of the trust lists, the comma-separated list
 * walk and its trimming, "host:port" rewriting, and listening sockets on this machine's loopback
 * (their flags, their real port, and the refusal of bad settings with the reason). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netaddr.h"

/* The 16 bytes of text as netaddr_ip_parse gives them, failing the test when it refuses. */
static void parsed(const char *text, uint8_t out[16], bool want_v4)
{
    bool v4 = !want_v4;
    if (!netaddr_ip_parse(text, out, &v4))
        fail_msg("\"%s\" refused", text);
    if (v4 != want_v4)
        fail_msg("\"%s\": v4 %d, want %d", text, v4, want_v4);
}

static void test_ip_parse_v4(void **state)
{
    (void)state;
    static const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1};
    uint8_t a[16];
    parsed("192.0.2.1", a, true);
    assert_memory_equal(a, want, 16);
    parsed("0.0.0.0", a, true);
    assert_int_equal(a[10], 0xff);
    assert_int_equal(a[11], 0xff);
    assert_int_equal(a[12] | a[13] | a[14] | a[15], 0);
    parsed("255.255.255.255", a, true);
    assert_int_equal(a[12] & a[13] & a[14] & a[15], 0xff);
}

static void test_ip_parse_v6(void **state)
{
    (void)state;
    static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t any[16] = {0};
    uint8_t a[16];
    parsed("2001:db8::1", a, false);
    assert_memory_equal(a, doc, 16);
    parsed("2001:0DB8:0000:0000:0000:0000:0000:0001", a, false);
    assert_memory_equal(a, doc, 16);
    parsed("::", a, false);
    assert_memory_equal(a, any, 16);
    parsed("::1", a, false);
    assert_int_equal(a[15], 1);
}

/* Both spellings of an IPv4 address are the same 16 bytes; v4 says which spelling it was. */
static void test_ip_parse_mapped_equal(void **state)
{
    (void)state;
    uint8_t plain[16], mapped[16], hex[16], other[16];
    parsed("192.0.2.1", plain, true);
    parsed("::ffff:192.0.2.1", mapped, false);
    parsed("::FFFF:c000:201", hex, false);
    parsed("::ffff:192.0.2.2", other, false);
    assert_memory_equal(plain, mapped, 16);
    assert_memory_equal(plain, hex, 16);
    assert_memory_not_equal(plain, other, 16);
}

static void test_ip_parse_null_v4(void **state)
{
    (void)state;
    uint8_t a[16], b[16];
    assert_true(netaddr_ip_parse("198.51.100.7", a, NULL));
    parsed("198.51.100.7", b, true);
    assert_memory_equal(a, b, 16);
    assert_true(netaddr_ip_parse("2001:db8::7", a, NULL));
    parsed("2001:db8::7", b, false);
    assert_memory_equal(a, b, 16);
    assert_false(netaddr_ip_parse("1.2.3", a, NULL));
}

static void test_ip_parse_refused(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",          "1.2.3",        "1.2.3.4.5",         "256.1.1.1", "1.2.3.-4",
        "::g",       "2001:db8:::1", "1:2:3:4:5:6:7:8:9", " 1.2.3.4",  "1.2.3.4 ",
        "1.2.3.4\t", "1.2.3.4/8",    "2001:db8::/32",     "[::1]",     "1.2.3.4:80",
        "localhost", "example.com",  "0x7f.0.0.1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t a[16];
        bool v4 = false;
        if (netaddr_ip_parse(bad[i], a, &v4))
            fail_msg("\"%s\" taken as an address", bad[i]);
    }
}

/* The items of list as netaddr_list_next gives them, each in brackets ("[a][ b]"), trimmed when
 * trim; also checks that *p ends on the list's terminating NUL. */
static void items(const char *list, bool trim, char *out, size_t outlen)
{
    const char *p = list, *item = NULL;
    size_t len = 0, used = 0;
    out[0] = '\0';
    while (netaddr_list_next(&p, &item, &len)) {
        assert_true(item >= list && item + len <= list + strlen(list));
        if (trim)
            netaddr_trim(&item, &len);
        int w = snprintf(out + used, outlen - used, "[%.*s]", (int)len, item);
        assert_true(w > 0 && (size_t)w < outlen - used);
        used += (size_t)w;
    }
    if (list)
        assert_ptr_equal(p, list + strlen(list));
    else
        assert_null(p);
}

static void expect_items(const char *list, const char *raw, const char *trimmed)
{
    char got[256];
    items(list, false, got, sizeof got);
    if (strcmp(got, raw) != 0)
        fail_msg("\"%s\": items %s, want %s", list ? list : "(null)", got, raw);
    items(list, true, got, sizeof got);
    if (strcmp(got, trimmed) != 0)
        fail_msg("\"%s\": trimmed %s, want %s", list ? list : "(null)", got, trimmed);
}

static void test_list_next(void **state)
{
    (void)state;
    expect_items(NULL, "", "");
    expect_items("", "", "");
    expect_items("10.0.0.1", "[10.0.0.1]", "[10.0.0.1]");
    expect_items("a,b", "[a][b]", "[a][b]");
    expect_items("a,b,", "[a][b]", "[a][b]"); /* a trailing comma ends the list */
    expect_items(",a,,b", "[][a][][b]", "[][a][][b]");
    expect_items(",", "[]", "[]");
    expect_items(" a ,\tb\t, c d ", "[ a ][\tb\t][ c d ]", "[a][b][c d]");
    expect_items(" , ", "[ ][ ]", "[][]");
    expect_items("::1, 2001:db8::/32", "[::1][ 2001:db8::/32]", "[::1][2001:db8::/32]");

    const char *item = "unchanged";
    size_t len = 42;
    assert_false(netaddr_list_next(NULL, &item, &len)); /* p NULL */
    assert_string_equal(item, "unchanged");
    assert_int_equal(len, 42);
}

static void expect_trim(const char *s, size_t len, const char *want)
{
    const char *t = s;
    size_t n = len;
    netaddr_trim(&t, &n);
    assert_true(t >= s && t + n <= s + len);
    if (n != strlen(want) || strncmp(t, want, n) != 0)
        fail_msg("trim \"%.*s\": \"%.*s\", want \"%s\"", (int)len, s, (int)n, t, want);
}

static void test_trim(void **state)
{
    (void)state;
    expect_trim("", 0, "");
    expect_trim("   ", 3, "");
    expect_trim("\t \t", 3, "");
    expect_trim("a", 1, "a");
    expect_trim("  a b\t ", 7, "a b");
    expect_trim("\na\r", 3, "\na\r"); /* only spaces and tabs are blanks */
    expect_trim("  ab  cd", 4, "ab"); /* never looks past len */
    expect_trim(" x", 1, "");
}

static void expect_with_port(const char *hostport, int port, const char *want)
{
    char out[64];
    netaddr_with_port(hostport, port, out, sizeof out);
    assert_string_equal(out, want);
}

static void test_with_port(void **state)
{
    (void)state;
    expect_with_port("0.0.0.0:0", 41234, "0.0.0.0:41234");
    expect_with_port("127.0.0.1:8443", 9000, "127.0.0.1:9000");
    expect_with_port("[::]:0", 8443, "[::]:8443");
    expect_with_port("[2001:db8::1]:443", 0, "[2001:db8::1]:0");
    expect_with_port(":8443", 65535, ":65535");

    char out[16];
    memset(out, '#', sizeof out);
    netaddr_with_port("0.0.0.0:0", 41234, out, 10); /* stays within outlen */
    assert_string_equal(out, "0.0.0.0:4");
    assert_int_equal(out[10], '#');
}

/* How many file descriptors this process has open. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

/* The listener's flags as netaddr_listen promises them. */
static void check_listener(int fd)
{
    assert_true(fd >= 0);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    assert_int_not_equal(sockopt(fd, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(sockopt(fd, SOL_SOCKET, SO_ACCEPTCONN), 1);
}

/* Connect to the listener lfd at addr (its own address) and accept the connection: the
 * accepted socket has TCP_NODELAY from the listener. */
static void check_accept(int lfd, struct sockaddr *addr, socklen_t addrlen)
{
    int cfd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cfd >= 0);
    assert_int_equal(connect(cfd, addr, addrlen), 0);
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    assert_int_not_equal(sockopt(afd, IPPROTO_TCP, TCP_NODELAY), 0);
    close(afd);
    close(cfd);
    /* nothing more waiting: the non-blocking listener says so at once */
    assert_int_equal(accept(lfd, NULL, NULL), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* A listener on hostport (a loopback address, port 0), checked: its flags, and a real port;
 * its address (addrlen bytes, as getsockname gives it) into addr. */
static int listen_checked(const char *hostport, struct sockaddr *addr, socklen_t addrlen)
{
    char err[256] = "";
    int fd = netaddr_listen(hostport, false, err, sizeof err);
    if (fd < 0)
        fail_msg("%s: %s", hostport, err);
    check_listener(fd);
    socklen_t len = addrlen;
    assert_int_equal(getsockname(fd, addr, &len), 0);
    assert_int_equal(len, addrlen);
    int port = netaddr_local_port(fd);
    assert_true(port > 0 && port <= 65535);
    return fd;
}

static void test_listen_v4(void **state)
{
    (void)state;
    struct sockaddr_in a;
    int fd = listen_checked("127.0.0.1:0", (struct sockaddr *)&a, sizeof a);
    assert_int_equal(a.sin_family, AF_INET);
    assert_int_equal(ntohl(a.sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(netaddr_local_port(fd), ntohs(a.sin_port));
    check_accept(fd, (struct sockaddr *)&a, sizeof a);
    close(fd);
}

/* True when this machine can bind IPv6 loopback (containers may have IPv6 off). */
static bool ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void test_listen_v6(void **state)
{
    (void)state;
    if (!ipv6_loopback()) {
        print_message("no IPv6 loopback here: [::1]:0 not tried\n");
        skip();
    }
    struct sockaddr_in6 a;
    int fd = listen_checked("[::1]:0", (struct sockaddr *)&a, sizeof a);
    assert_int_equal(a.sin6_family, AF_INET6);
    assert_true(IN6_IS_ADDR_LOOPBACK(&a.sin6_addr));
    assert_int_equal(netaddr_local_port(fd), ntohs(a.sin6_port));
    check_accept(fd, (struct sockaddr *)&a, sizeof a);
    close(fd);
}

static void test_local_port_without_one(void **state)
{
    (void)state;
    assert_int_equal(netaddr_local_port(-1), -1);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(netaddr_local_port(sv[0]), -1); /* not an IP socket */
    close(sv[0]);
    close(sv[1]);
}

/* netaddr_listen(hostport) must refuse with -1, err holding says, and leave no fd open. */
static void expect_listen_refused(const char *hostport, bool reuseport, const char *says)
{
    char err[256] = "";
    int before = open_fds();
    int fd = netaddr_listen(hostport, reuseport, err, sizeof err);
    if (fd >= 0)
        fail_msg("\"%s\" listened on port %d", hostport, netaddr_local_port(fd));
    assert_int_equal(fd, -1);
    if (!strstr(err, says))
        fail_msg("\"%s\": \"%s\" does not say \"%s\"", hostport, err, says);
    assert_int_equal(open_fds(), before);
}

static void test_listen_refused(void **state)
{
    (void)state;
    expect_listen_refused("", false, "not host:port: ");
    expect_listen_refused("127.0.0.1", false, "not host:port: 127.0.0.1");
    expect_listen_refused("127.0.0.1:", false, "not host:port: 127.0.0.1:");
    expect_listen_refused("127.0.0.1:99999", false, "not a port (0..65535): 127.0.0.1:99999");
    expect_listen_refused("127.0.0.1:65536", false, "not a port (0..65535): 127.0.0.1:65536");
    expect_listen_refused("127.0.0.1:-1", false, "not a port");
    expect_listen_refused("127.0.0.1:+80", false, "not a port");
    expect_listen_refused("127.0.0.1: 80", false, "not a port");
    expect_listen_refused("127.0.0.1:https", false, "not a port");
    expect_listen_refused("127.0.0.1:0x50", false, "not a port");
    expect_listen_refused("127.0.0.1:000080", false, "not a port");
    /* hosts must be numeric: no name lookup at start-up */
    expect_listen_refused("localhost:0", false, "localhost:0: ");
    expect_listen_refused("example.com:8443", false, "example.com:8443: ");
    expect_listen_refused("[::g]:0", false, "[::g]:0: ");
    /* an address this machine does not have (TEST-NET-1) */
    char says[128];
    snprintf(says, sizeof says, "bind 192.0.2.1:0: %s", strerror(EADDRNOTAVAIL));
    expect_listen_refused("192.0.2.1:0", false, says);

    char small[12];
    memset(small, '#', sizeof small);
    assert_int_equal(netaddr_listen("127.0.0.1", false, small, 8), -1);
    assert_string_equal(small, "not hos"); /* the reason stays within errlen */
    assert_int_equal(small[8], '#');
}

/* A port some socket listens on already: refused unless every socket on it asked for
 * reuseport; with reuseport both listen on the same port. */
static void test_listen_port_shared(void **state)
{
    (void)state;
    char err[256] = "", hostport[64], says[128];
    int first = netaddr_listen("127.0.0.1:0", false, err, sizeof err);
    check_listener(first);
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", netaddr_local_port(first));
    snprintf(says, sizeof says, "bind %s: %s", hostport, strerror(EADDRINUSE));
    expect_listen_refused(hostport, false, says);
    expect_listen_refused(hostport, true, says); /* the first did not ask for it */
    close(first);

    int a = netaddr_listen("127.0.0.1:0", true, err, sizeof err);
    check_listener(a);
    assert_int_equal(sockopt(a, SOL_SOCKET, SO_REUSEPORT), 1);
    int port = netaddr_local_port(a);
    snprintf(hostport, sizeof hostport, "127.0.0.1:%d", port);
    int b = netaddr_listen(hostport, true, err, sizeof err);
    if (b < 0)
        fail_msg("second %s with reuseport: %s", hostport, err);
    check_listener(b);
    assert_int_equal(netaddr_local_port(b), port);
    snprintf(says, sizeof says, "bind %s: %s", hostport, strerror(EADDRINUSE));
    expect_listen_refused(hostport, false, says); /* a third without it */
    close(a);
    close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_parse_v4),
        cmocka_unit_test(test_ip_parse_v6),
        cmocka_unit_test(test_ip_parse_mapped_equal),
        cmocka_unit_test(test_ip_parse_null_v4),
        cmocka_unit_test(test_ip_parse_refused),
        cmocka_unit_test(test_list_next),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_with_port),
        cmocka_unit_test(test_listen_v4),
        cmocka_unit_test(test_listen_v6),
        cmocka_unit_test(test_local_port_without_one),
        cmocka_unit_test(test_listen_refused),
        cmocka_unit_test(test_listen_port_shared),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
