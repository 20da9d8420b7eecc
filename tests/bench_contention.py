"""Contention benchmark for `make bench`: generation speed at the default
thread count against -t 1, with no other load and with a CPU hog pinned to
one core (on each core in turn), through `nibble run` and through one
streaming request to `nibble serve`, all in this one run. The runs are
interleaved (every configuration once, then again) so that a slow minute
of a shared machine hits them alike; medians are reported.

usage: bench_contention.py NIBBLE MODEL.nib WORKDIR [REPS] [TOKENS]"""
import json, os, socket, statistics, subprocess, sys, time

NB, MODEL, WORK = sys.argv[1], sys.argv[2], sys.argv[3]
REPS = int(sys.argv[4]) if len(sys.argv) > 4 else 3
TOKENS = int(sys.argv[5]) if len(sys.argv) > 5 else 64
NCPU = os.cpu_count()
HOG_BOUND_S = 1800  # the hog ends by itself even if this script is killed


class Hog:
    """A busy loop pinned to one CPU, for the duration of a with block."""

    def __init__(self, cpu):
        self.cpu, self.p = cpu, None

    def __enter__(self):
        if self.cpu is not None:
            # taskset execs timeout, which forwards our SIGTERM to the loop
            self.p = subprocess.Popen(["taskset", "-c", str(self.cpu), "timeout",
                                       str(HOG_BOUND_S), "sh", "-c", "while :; do :; done"])
            time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        if self.p:
            self.p.terminate()
            self.p.wait()


def run_speed(threads):
    """tok/s after the first token of a greedy `nibble run`."""
    cmd = [NB, "run", "-m", MODEL, "-p", "Hi", "-n", str(TOKENS), "--temp", "0",
           "--no-echo", "--ctx", "256", "-v"] + (["-t", str(threads)] if threads else [])
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       check=True)
    for line in r.stderr.splitlines():
        if line.startswith("generated:"):
            return float(line.split(",")[1].split()[0])
    raise RuntimeError("no speed in: " + r.stderr)


def stream(path):
    """One streaming completion: (tok/s between the first and the last
    content chunk, the longest gap between chunks in ms)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    body = json.dumps({"prompt": "Hi", "max_tokens": TOKENS, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body)
    times, buf, tokens = [], b"", 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        now = time.monotonic()
        buf += b
        times += [now] * b.count(b'"text":"') if b'"text":""' not in b else []
    s.close()
    for line in buf.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage":{' in line:
            tokens = json.loads(line[6:])["usage"]["completion_tokens"]
    gaps = [b - a for a, b in zip(times, times[1:])]
    if tokens < 2 or len(times) < 2 or times[-1] == times[0]:
        raise RuntimeError("stream too short: %d tokens" % tokens)
    return (len(times) - 1) / (times[-1] - times[0]), max(gaps) * 1e3


class Server:
    def __init__(self, threads):
        self.sock = os.path.join(WORK, "contention-%s.sock" % (threads or "default"))
        self.log = open(os.path.join(WORK, "contention-%s.log" % (threads or "default")), "w")
        cmd = [NB, "serve", "-m", MODEL, "-s", self.sock, "--slots", "1", "--ctx", "256"]
        self.p = subprocess.Popen(cmd + (["-t", str(threads)] if threads else []),
                                  stderr=self.log)
        for _ in range(300):
            try:
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.connect(self.sock)
                c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if b'"ready"' in c.recv(4096):
                    c.close()
                    break
                c.close()
            except OSError:
                pass
            time.sleep(0.1)
        stream(self.sock)  # warm-up: faults the weights in

    def close(self):
        self.p.terminate()
        self.p.wait()
        self.log.close()


def ratio_line(name, by_threads):
    d, one = statistics.median(by_threads[0]), statistics.median(by_threads[1])
    return "%-22s %9.2f %9.2f %8.2fx" % (name, d, one, d / one)


def main():
    hogs = [None] + list(range(NCPU)) if NCPU > 1 else [None]
    label = lambda h: "no hog" if h is None else "hog on cpu %d" % h
    runs = {h: ([], []) for h in hogs}
    serves = {h: ([], [], [], []) for h in hogs}
    servers = [Server(None), Server(1)]
    try:
        for _ in range(REPS):
            for h in hogs:
                with Hog(h):
                    for i, t in enumerate((None, 1)):
                        runs[h][i].append(run_speed(t))
                    for i, srv in enumerate(servers):
                        rate, gap = stream(srv.sock)
                        serves[h][i].append(rate)
                        serves[h][2 + i].append(gap)
    finally:
        for srv in servers:
            srv.close()
    print("generation tok/s, median of %d, %d tokens: default threads (%d) against -t 1"
          % (REPS, TOKENS, NCPU))
    print("%-22s %9s %9s %9s" % ("nibble run", "default", "-t 1", "ratio"))
    for h in hogs:
        print(ratio_line(label(h), runs[h]))
    print("%-22s %9s %9s %9s   longest gap ms: default, -t 1 (worst of %d)"
          % ("nibble serve, 1 stream", "default", "-t 1", "ratio", REPS))
    for h in hogs:
        print(ratio_line(label(h), serves[h]) + "   %6.1f %6.1f"
              % (max(serves[h][2]), max(serves[h][3])))
    if len(hogs) > 1:
        worst = min(statistics.median(d[0]) / statistics.median(d[1])
                    for h in hogs[1:] for d in (runs[h], serves[h]))
        print("with a hog, default threads against -t 1: lowest ratio %.2fx (1.00: as fast)" % worst)


main()
