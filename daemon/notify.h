/* The systemd notify protocol (sd_notify(3)) without libsystemd: datagrams
 * to the AF_UNIX socket named by $NOTIFY_SOCKET ("@..." is the abstract
 * namespace). A no-op when the variable is unset. Thread-safe. */
#ifndef DAEMON_NOTIFY_H
#define DAEMON_NOTIFY_H

/* Sends one state string ("READY=1", "STATUS=...", "WATCHDOG=1",
 * "STOPPING=1"). Returns 1 sent, 0 no socket configured, -1 on error. */
int notify_send(const char *state);
int notify_sendf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The watchdog period in microseconds from $WATCHDOG_USEC (honouring
 * $WATCHDOG_PID), 0 when the watchdog is off. */
long long notify_watchdog_usec(void);

#endif
