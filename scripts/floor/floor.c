/*
 * The physical floor of a broadcast on this machine: what the kernel's loopback TCP
 * costs with nothing else in the way. scripts/bench-floor.sh builds and runs it beside
 * chat-server and loadgen at the same shapes, so that their CPU per delivery and their
 * latency can be read as multiples of the floor.
 *
 * One process, two threads, N loopback TCP connections:
 *   - the sender thread writes frames to the accepted ends (as a server would), one
 *     send() per frame, and measures its own CPU time (CLOCK_THREAD_CPUTIME_ID);
 *   - the reader thread waits on the other ends with one epoll set (level-triggered) and
 *     does one read() per ready socket, stamping each frame's arrival, and measures its
 *     own CPU time.
 *
 *   floor wide N ROUNDS INTERVAL_MS BYTES
 *       every INTERVAL_MS, one frame of BYTES to each of the N sockets in turn: the shape
 *       of one broadcast to N users. Per round, the "last reader" is the time from the
 *       round's first send to the moment the last socket has its frame.
 *   floor rate N PER_SEC SECONDS BYTES
 *       PER_SEC frames a second in all, round-robin over the N sockets, in 1 ms ticks;
 *       the frames a socket is due in one tick go in one send() (as a server batches).
 *
 * Prints one line of key=value pairs:
 *   frames, send_us (sender CPU per frame), read_us (reader CPU per frame),
 *   reads (read calls per frame), p50_ms, p99_ms (each frame's arrival after its send
 *   time: for `wide`, after its round's first send), last_reader_ms (median over rounds
 *   of the last socket's arrival; `wide` only), lost (frames not read when it stopped).
 *
 * Bounded: at most 9,900 connections (two descriptors each, under the 20,000 open files
 * one process may hold here), at most 3,600 rounds or seconds; the reader gives up 5 s
 * after the last send. Loopback only. In `rate` mode a frame's send time is taken from
 * the schedule (exact to about one 1 ms tick).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNECTIONS 9900
#define MAX_ROUNDS 3600

static int wide;
static long n, rounds, interval_ms, per_sec, seconds, bytes;
static int *senders, *readers;
static _Atomic uint64_t round_start[MAX_ROUNDS];
static _Atomic int sending_done;
static uint64_t send_cpu_ns, frames_sent;
static uint64_t *latencies; /* ns, one per frame read */
static uint64_t latency_count, latency_cap;
static uint64_t *last_arrival; /* per round, wide only */
static uint64_t start_ns;

static uint64_t now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(3);
}

static void sleep_until(uint64_t at) {
    struct timespec t = {.tv_sec = at / 1000000000u, .tv_nsec = at % 1000000000u};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) == EINTR) {
    }
}

static void send_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("send");
        }
        buf += w;
        len -= (size_t)w;
    }
}

static void *sender(void *unused) {
    (void)unused;
    char *frame = malloc((size_t)bytes * 64);
    if (!frame) die("malloc");
    memset(frame, 'x', (size_t)bytes * 64);
    uint64_t cpu0 = now(CLOCK_THREAD_CPUTIME_ID);
    if (wide) {
        for (long r = 0; r < rounds; r++) {
            uint64_t at = start_ns + (uint64_t)r * (uint64_t)interval_ms * 1000000u;
            sleep_until(at);
            atomic_store(&round_start[r], now(CLOCK_MONOTONIC));
            for (long i = 0; i < n; i++) send_all(senders[i], frame, (size_t)bytes);
            frames_sent += (uint64_t)n;
        }
    } else {
        /* Per 1 ms tick, the frames due since the last tick, round-robin. */
        long next = 0;
        uint64_t due_total = 0;
        for (long tick = 1; tick <= seconds * 1000; tick++) {
            sleep_until(start_ns + (uint64_t)tick * 1000000u);
            uint64_t due = (uint64_t)per_sec * (uint64_t)tick / 1000u;
            uint64_t k = due - due_total;
            due_total = due;
            /* k frames over the sockets from `next` on: socket j gets ceil/floor share. */
            uint64_t each = k / (uint64_t)n, extra = k % (uint64_t)n;
            long touched = each > 0 ? n : (long)extra;
            for (long j = 0; j < touched; j++) {
                long i = (next + j) % n;
                uint64_t count = each + ((uint64_t)j < extra ? 1 : 0);
                while (count > 0) {
                    uint64_t c = count > 64 ? 64 : count;
                    send_all(senders[i], frame, (size_t)(c * (uint64_t)bytes));
                    count -= c;
                }
            }
            next = (next + (long)extra) % n;
            frames_sent += k;
        }
    }
    send_cpu_ns = now(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    atomic_store(&sending_done, 1);
    free(frame);
    return NULL;
}

static int compare(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile(uint64_t *sorted, uint64_t count, double p) {
    if (count == 0) return 0.0;
    uint64_t i = (uint64_t)(p * (double)(count - 1) + 0.5);
    return (double)sorted[i] / 1e6;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "wide") == 0) {
        wide = 1;
        n = atol(argv[2]);
        rounds = atol(argv[3]);
        interval_ms = atol(argv[4]);
        bytes = atol(argv[5]);
        if (rounds < 1 || rounds > MAX_ROUNDS || interval_ms < 1) {
            fprintf(stderr, "floor: ROUNDS 1..%d, INTERVAL_MS >= 1\n", MAX_ROUNDS);
            return 2;
        }
    } else if (argc == 6 && strcmp(argv[1], "rate") == 0) {
        n = atol(argv[2]);
        per_sec = atol(argv[3]);
        seconds = atol(argv[4]);
        bytes = atol(argv[5]);
        if (per_sec < 1 || seconds < 1 || seconds > 3600) {
            fprintf(stderr, "floor: PER_SEC >= 1, SECONDS 1..3600\n");
            return 2;
        }
    } else {
        fprintf(stderr,
                "usage: floor wide N ROUNDS INTERVAL_MS BYTES\n"
                "       floor rate N PER_SEC SECONDS BYTES\n");
        return 2;
    }
    if (n < 1 || n > MAX_CONNECTIONS || bytes < 2 || bytes > 65536) {
        fprintf(stderr, "floor: N 1..%d, BYTES 2..65536\n", MAX_CONNECTIONS);
        return 2;
    }

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 1024) < 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(listener, (struct sockaddr *)&addr, &len) < 0) die("getsockname");

    senders = calloc((size_t)n, sizeof(int));
    readers = calloc((size_t)n, sizeof(int));
    uint64_t *received = calloc((size_t)n, sizeof(uint64_t));
    if (!senders || !readers || !received) die("calloc");
    int one = 1;
    for (long i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c < 0) die("socket (the open-file limit?)");
        if (connect(c, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
            die("connect");
        int a = accept(listener, NULL, NULL);
        if (a < 0) die("accept");
        setsockopt(a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        senders[i] = a;
        readers[i] = c;
    }

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (long i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, readers[i], &ev) < 0) die("epoll_ctl");
    }

    uint64_t expected = wide ? (uint64_t)n * (uint64_t)rounds : 0;
    latency_cap = wide ? expected : (uint64_t)per_sec * (uint64_t)seconds + 1;
    latencies = malloc(latency_cap * sizeof(uint64_t));
    last_arrival = calloc(MAX_ROUNDS, sizeof(uint64_t));
    if (!latencies || !last_arrival) die("malloc");

    start_ns = now(CLOCK_MONOTONIC) + 200000000u; /* 200 ms to settle */
    pthread_t thread;
    if (pthread_create(&thread, NULL, sender, NULL) != 0) die("pthread_create");

    /* The reader: this thread. */
    static char buf[1 << 16];
    struct epoll_event events[1024];
    uint64_t frames_read = 0, reads = 0, giving_up = 0;
    uint64_t cpu0 = now(CLOCK_THREAD_CPUTIME_ID);
    for (;;) {
        int ready = epoll_wait(ep, events, 1024, 100);
        if (ready < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        uint64_t t = now(CLOCK_MONOTONIC);
        for (int e = 0; e < ready; e++) {
            long i = (long)events[e].data.u64;
            ssize_t got = read(readers[i], buf, sizeof buf);
            reads++;
            if (got <= 0) continue;
            uint64_t before = received[i] / (uint64_t)bytes;
            received[i] += (uint64_t)got;
            uint64_t after = received[i] / (uint64_t)bytes;
            for (uint64_t k = before; k < after; k++) {
                uint64_t sent_at;
                if (wide) {
                    sent_at = atomic_load(&round_start[k < MAX_ROUNDS ? k : MAX_ROUNDS - 1]);
                    if (k < MAX_ROUNDS && t - sent_at > last_arrival[k])
                        last_arrival[k] = t - sent_at;
                } else {
                    /* Frame k of socket i was due at tick ~ (k * n + i) / per_sec. */
                    sent_at = start_ns + (uint64_t)(((double)k * (double)n + (double)i) /
                                                    (double)per_sec * 1e9);
                }
                if (latency_count < latency_cap)
                    latencies[latency_count++] = t > sent_at ? t - sent_at : 0;
            }
            frames_read += after - before;
        }
        if (atomic_load(&sending_done)) {
            if (frames_read >= frames_sent) break;
            if (giving_up == 0) giving_up = t + 5000000000u;
            if (t > giving_up) break;
        }
    }
    uint64_t read_cpu_ns = now(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    pthread_join(thread, NULL);

    qsort(latencies, latency_count, sizeof(uint64_t), compare);
    double last_reader = 0.0;
    if (wide) {
        uint64_t *lasts = malloc((size_t)rounds * sizeof(uint64_t));
        if (!lasts) die("malloc");
        memcpy(lasts, last_arrival, (size_t)rounds * sizeof(uint64_t));
        qsort(lasts, (size_t)rounds, sizeof(uint64_t), compare);
        last_reader = percentile(lasts, (uint64_t)rounds, 0.5);
        free(lasts);
    }
    printf("frames=%llu send_us=%.3f read_us=%.3f reads=%.3f p50_ms=%.3f p99_ms=%.3f "
           "last_reader_ms=%.3f lost=%llu\n",
           (unsigned long long)frames_read,
           frames_sent ? (double)send_cpu_ns / 1e3 / (double)frames_sent : 0.0,
           frames_read ? (double)read_cpu_ns / 1e3 / (double)frames_read : 0.0,
           frames_read ? (double)reads / (double)frames_read : 0.0,
           percentile(latencies, latency_count, 0.5), percentile(latencies, latency_count, 0.99),
           last_reader, (unsigned long long)(frames_sent - frames_read));
    return frames_read == frames_sent ? 0 : 1;
}
