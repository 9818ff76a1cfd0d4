#!/usr/bin/python3
"""CPU the daemon spends per request: python3 bench/cpu_per_req.py HOST:PORT PID PATH N
(N sequential keep-alive GETs; the CPU from /proc/PID/stat before and after)."""
import http.client, sys, time, os
addr, pid, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
host, port = addr.rsplit(':', 1)
def cpu():
    f = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
c = http.client.HTTPConnection(host, int(port))
c.request('GET', path); r = c.getresponse(); body = r.read()
t0 = cpu(); w0 = time.time()
for i in range(n):
    c.request('GET', path); r = c.getresponse(); r.read()
t1 = cpu(); w1 = time.time()
print('%s: %.3f ms CPU/request (%d bytes), wall %.2f ms/request' % (path, (t1 - t0) * 1e3 / n, len(body), (w1 - w0) * 1e3 / n))
