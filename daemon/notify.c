/* sd_notify over $NOTIFY_SOCKET (see notify.h). */
#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path) return -1;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    /* non-blocking: a manager that stops reading must not stall the main
     * loop; a lost WATCHDOG=1 or STATUS= is resent soon anyway */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    ssize_t n;
    do {
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
    } while (n < 0 && errno == EINTR);
    close(fd);
    return n == (ssize_t)strlen(state) ? 1 : -1;
}

int notify_sendf(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return notify_send(buf);
}

long long notify_watchdog_usec(void) {
    const char *u = getenv("WATCHDOG_USEC"), *p = getenv("WATCHDOG_PID");
    if (!u || !*u) return 0;
    if (p && *p && atol(p) != (long)getpid()) return 0;
    char *end;
    long long v = strtoll(u, &end, 10);
    return (*end || v <= 0) ? 0 : v;
}
