"""Wait for a line in the console log, then send one HMP command to QEMU's monitor socket."""

import socket
import sys
import time

log, sock_path, needle, cmd = sys.argv[1:5]
while True:
    try:
        with open(log, errors="replace") as f:
            if needle in f.read():
                break
    except OSError:
        pass
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
time.sleep(0.2)
s.recv(65536)
s.sendall((cmd + "\n").encode())
time.sleep(0.5)
print(f"hmp_watch: sent {cmd!r} at {time.time():.3f}", file=sys.stderr)
s.close()
