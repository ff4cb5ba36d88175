"""fork() from a multi-threaded Python process for hakmem's program tests.

Four threads allocate and free continuously while the main thread forks 50
children; each child allocates, checks and exits. A child that inherits a
lock held by another thread at fork time would deadlock (the test's timeout
catches it) or crash. Prints deterministic counts."""
import os
import threading

stop = threading.Event()


def churn(t):
    live = []
    while not stop.is_set():
        live.append(bytearray(1000 + t * 37) * 3)
        live.append([t] * 500)
        live.append(str(t) * (t * 300 + 17))
        if len(live) > 300:
            del live[:150]


threads = [threading.Thread(target=churn, args=(t,)) for t in range(4)]
for th in threads:
    th.start()
ok = 0
for i in range(50):
    pid = os.fork()
    if pid == 0:
        blocks = [bytearray(i * 10 + k) for k in range(300)]
        words = {str(k): [k] * (k % 50) for k in range(2000)}
        good = sum(map(len, blocks)) == sum(i * 10 + k for k in range(300)) and len(words) == 2000
        os._exit(0 if good else 3)
    _, status = os.waitpid(pid, 0)
    ok += os.waitstatus_to_exitcode(status) == 0
stop.set()
for th in threads:
    th.join()
print("children that allocated and exited cleanly:", ok, "of 50")
