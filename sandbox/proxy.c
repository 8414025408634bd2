/*
 * proctor-sandbox: the allowlist proxy (--net allowlist). The sandbox has its own network
 * namespace with loopback only; init made a listener on 127.0.0.1:<proxy-port> in it and handed
 * it to the helper, which forks this process outside the sandbox. Its steps per connection: read
 * the request (CONNECT host:port for TLS, an absolute http:// URI or a Host header for plain
 * HTTP), check the destination against --allow-host before anything else, resolve the name here
 * (never in the sandbox), refuse addresses that are loopback, link-local, private or the host's
 * own unless --allow-private (DNS rebinding), connect, relay, and report one `net` record when the
 * connection ends: the decision, why, and the bytes up and down.
 *
 * One process, one poll loop, no threads. Name resolution (getaddrinfo) blocks the loop while it
 * runs; an agent opens few connections. --proxy-hosts FILE replaces DNS with a hosts-style file
 * (`NAME ADDRESS...` per line): the tests' resolver, where nothing but loopback is reachable.
 */
#include "psb.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROXY_MAX_CONNS 256
#define PROXY_HEAD_MAX 16384           /* a request head larger than this is refused */
#define PROXY_BUF 65536                /* per direction */
#define PROXY_MAX_ADDRS 16
#define PROXY_HEAD_TIMEOUT_MS 30000    /* to send a complete request head */
#define PROXY_CONNECT_TIMEOUT_MS 30000 /* to reach the destination, all its addresses */
#define PROXY_DENY_RECORDS_MAX 1000    /* refusals past this are counted, not reported one by one */
#define PROXY_HOST_MAX 256

enum conn_state { C_FREE, C_REQUEST, C_CONNECTING, C_RELAY };

struct conn {
    enum conn_state state;
    int client, upstream;
    char host[PROXY_HOST_MAX];
    int port;
    int tunnel; /* CONNECT: "200" to the client once connected */
    char *head;
    size_t head_len;
    char *up, *down; /* pending bytes towards the destination and towards the client */
    size_t up_len, up_off, down_len, down_off;
    long long bytes_up, bytes_down;
    int client_eof, upstream_eof, up_shut;
    struct sockaddr_storage addrs[PROXY_MAX_ADDRS];
    int naddrs, next_addr;
    long long deadline;
};

/* A name of the test resolver file with its addresses. */
struct hosts_entry {
    char name[PROXY_HOST_MAX];
    struct sockaddr_storage addrs[PROXY_MAX_ADDRS];
    int naddrs;
};

struct proxy {
    const struct psb_config *cfg;
    int listen_fd;
    struct conn conns[PROXY_MAX_CONNS];
    struct hosts_entry *hosts; /* --proxy-hosts, NULL: DNS */
    int nhosts;
    struct sockaddr_storage own[64]; /* the host's own addresses */
    int nown;
    long long denied, dropped;
};

static volatile sig_atomic_t stop_requested;

static void on_term(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* ---------- addresses ---------- */

static int parse_addr(const char *text, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

static void addr_text(const struct sockaddr_storage *a, char *buf, size_t cap)
{
    if (a->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, buf, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, buf, (socklen_t)cap);
}

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
}

/* What kind of IPv4 address (host order) is out of bounds: NULL for a public one. */
static const char *class_v4(uint32_t a)
{
    if ((a >> 24) == 0)
        return "unspecified";
    if ((a >> 24) == 127)
        return "loopback";
    if ((a >> 16) == 0xa9fe)
        return "link-local";
    if ((a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8)
        return "private";
    if ((a >> 22) == (100u << 2 | 1)) /* 100.64.0.0/10 */
        return "shared (carrier NAT)";
    if ((a >> 8) == 0xc00000 || (a >> 17) == (198u << 7 | 9)) /* 192.0.0.0/24, 198.18.0.0/15 */
        return "special-purpose";
    if ((a >> 28) >= 14)
        return "multicast or reserved";
    return NULL;
}

/* NULL when the address may be reached; else what it is. `always` is set for the addresses
 * even --allow-private does not open (unspecified, multicast: never a service). */
static const char *address_class(const struct proxy *p, const struct sockaddr_storage *s, int *always)
{
    *always = 0;
    const char *c = NULL;
    if (s->ss_family == AF_INET) {
        c = class_v4(ntohl(((const struct sockaddr_in *)s)->sin_addr.s_addr));
    } else {
        const uint8_t *b = ((const struct sockaddr_in6 *)s)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
        static const uint8_t zero[16] = {0};
        if (!memcmp(b, mapped, 12) || !memcmp(b, nat64, 12)) {
            c = class_v4((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
        } else if (!memcmp(b, zero, 16)) {
            c = "unspecified";
        } else if (!memcmp(b, zero, 15) && b[15] == 1) {
            c = "loopback";
        } else if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) {
            c = "link-local";
        } else if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) {
            c = "site-local";
        } else if ((b[0] & 0xfe) == 0xfc) {
            c = "private (unique local)";
        } else if (b[0] == 0xff) {
            c = "multicast or reserved";
        } else if (!memcmp(b, zero, 10) && !(b[10] | b[11])) {
            c = "IPv4-compatible"; /* ::a.b.c.d, deprecated: never a real destination */
        }
    }
    if (c && (!strcmp(c, "unspecified") || !strcmp(c, "multicast or reserved")))
        *always = 1;
    if (!c) {
        for (int i = 0; i < p->nown; i++)
            if (same_addr(&p->own[i], s))
                return "the host's own";
    }
    return c;
}

/* The host's own addresses (its interfaces, in the helper's network namespace). */
static void load_own_addresses(struct proxy *p)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) < 0)
        return;
    for (struct ifaddrs *i = ifa; i && p->nown < (int)(sizeof p->own / sizeof p->own[0]); i = i->ifa_next) {
        if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
            continue;
        memset(&p->own[p->nown], 0, sizeof p->own[0]);
        memcpy(&p->own[p->nown], i->ifa_addr,
               i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
        p->nown++;
    }
    freeifaddrs(ifa);
}

/* --proxy-hosts: `NAME ADDRESS...` per line, `#` comments. Returns -1 if it cannot be read. */
static int load_hosts(struct proxy *p, const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *save = NULL, *name = strtok_r(line, " \t\r\n", &save);
        if (!name || strlen(name) >= PROXY_HOST_MAX)
            continue;
        struct hosts_entry *grown = realloc(p->hosts, (size_t)(p->nhosts + 1) * sizeof *grown);
        if (!grown)
            break;
        p->hosts = grown;
        struct hosts_entry *e = &p->hosts[p->nhosts];
        memset(e, 0, sizeof *e);
        for (size_t k = 0; name[k]; k++)
            e->name[k] = (char)tolower((unsigned char)name[k]);
        for (char *t; (t = strtok_r(NULL, " \t\r\n", &save)) && e->naddrs < PROXY_MAX_ADDRS;)
            if (parse_addr(t, &e->addrs[e->naddrs]) == 0)
                e->naddrs++;
        p->nhosts++;
    }
    fclose(f);
    if (!p->hosts)
        p->hosts = calloc(1, sizeof *p->hosts); /* an empty file: nothing resolves */
    return 0;
}

/* The destination's addresses into c->addrs; NULL, or why not. */
static const char *resolve(struct proxy *p, struct conn *c)
{
    c->naddrs = 0;
    if (parse_addr(c->host, &c->addrs[0]) == 0) {
        c->naddrs = 1;
        return NULL;
    }
    if (p->hosts) {
        for (int i = 0; i < p->nhosts; i++) {
            if (strcmp(p->hosts[i].name, c->host))
                continue;
            memcpy(c->addrs, p->hosts[i].addrs, sizeof c->addrs);
            c->naddrs = p->hosts[i].naddrs;
        }
        return c->naddrs ? NULL : "does not resolve (test resolver)";
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int r = getaddrinfo(c->host, NULL, &hints, &res);
    if (r != 0)
        return "does not resolve";
    for (struct addrinfo *a = res; a && c->naddrs < PROXY_MAX_ADDRS; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addrlen > sizeof c->addrs[0])
            continue;
        memset(&c->addrs[c->naddrs], 0, sizeof c->addrs[0]);
        memcpy(&c->addrs[c->naddrs++], a->ai_addr, a->ai_addrlen);
    }
    freeaddrinfo(res);
    return c->naddrs ? NULL : "does not resolve";
}

/* ---------- the allowlist ---------- */

/* `host` of an --allow-host entry (lowercased, an address in its canonical text) and its port,
 * 0 when the entry names none. */
static void split_entry(const char *entry, char *host, size_t cap, int *port)
{
    *port = 0;
    const char *end = entry + strlen(entry);
    const char *h = entry, *he;
    if (*entry == '[') {
        h = entry + 1;
        he = strchr(h, ']');
        if (!he)
            he = end;
        if (he[0] == ']' && he[1] == ':')
            *port = atoi(he + 2);
    } else {
        const char *colon = strrchr(entry, ':');
        /* One colon: host:port; more: a bare IPv6 address. */
        if (colon && strchr(entry, ':') == colon) {
            he = colon;
            *port = atoi(colon + 1);
        } else
            he = end;
    }
    size_t n = (size_t)(he - h) < cap - 1 ? (size_t)(he - h) : cap - 1;
    for (size_t k = 0; k < n; k++)
        host[k] = (char)tolower((unsigned char)h[k]);
    host[n] = 0;
    struct sockaddr_storage a;
    if (parse_addr(host, &a) == 0)
        addr_text(&a, host, cap);
}

/* An entry without a port admits the web's ports, 443 and 80; `*.suffix` admits names below it. */
static int allowed(const struct psb_config *cfg, const char *host, int port)
{
    for (int i = 0; i < cfg->nallow_hosts; i++) {
        char pat[PROXY_HOST_MAX];
        int pport;
        split_entry(cfg->allow_hosts[i], pat, sizeof pat, &pport);
        if (pport ? port != pport : (port != 443 && port != 80))
            continue;
        if (pat[0] == '*' && pat[1] == '.') {
            size_t hl = strlen(host), sl = strlen(pat + 1);
            if (hl > sl && !strcmp(host + hl - sl, pat + 1))
                return 1;
        } else if (!strcmp(pat, host))
            return 1;
    }
    return 0;
}

/* ---------- requests ---------- */

/* "host", "host:port", "[v6]" or "[v6]:port" into c->host (lowercased, no trailing dot, an
 * address canonical) and c->port. -1 when it is not one. */
static int parse_authority(struct conn *c, const char *a, size_t len, int default_port)
{
    char buf[PROXY_HOST_MAX + 8];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, a, len);
    buf[len] = 0;
    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -1;
        *close = 0;
        host = buf + 1;
        if (close[1] == ':')
            port = close + 2;
        struct in6_addr a6;
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return -1;
    } else {
        char *colon = strchr(buf, ':');
        if (colon) {
            *colon = 0;
            port = colon + 1;
        }
        size_t hl = strlen(host);
        if (hl > 1 && host[hl - 1] == '.')
            host[hl - 1] = 0;
        for (char *s = host; *s; s++) {
            if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
                return -1;
            *s = (char)tolower((unsigned char)*s);
        }
    }
    if (!host[0] || strlen(host) >= PROXY_HOST_MAX)
        return -1;
    c->port = default_port;
    if (port) {
        char *end;
        long v = strtol(port, &end, 10);
        if (!*port || *end || v < 1 || v > 65535)
            return -1;
        c->port = (int)v;
    }
    struct sockaddr_storage addr;
    if (parse_addr(host, &addr) == 0)
        addr_text(&addr, c->host, sizeof c->host);
    else
        snprintf(c->host, sizeof c->host, "%s", host);
    return 0;
}

/* The value of header `name` in the head (lines after the first), or NULL; *len its length. */
static const char *header(const char *head, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (!strncasecmp(s, name, nl) && s[nl] == ':') {
            const char *v = s + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            const char *e = strstr(v, "\r\n");
            while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            *len = (size_t)(e - v);
            return v;
        }
    }
    return NULL;
}

/* Hop-by-hop headers are not forwarded: the proxy adds its own `Connection: close`, so one client
 * connection carries one request, whose destination was checked. */
static int hop_by_hop(const char *line)
{
    static const char *const names[] = {"connection:", "proxy-connection:", "proxy-authorization:", "keep-alive:"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strncasecmp(line, names[i], strlen(names[i])))
            return 1;
    return 0;
}

/* Parses c->head (complete: it holds "\r\n\r\n"). Sets host, port, tunnel and, for plain HTTP,
 * the request as it goes to the destination in c->up. NULL, or why the request is refused. */
static const char *parse_request(struct conn *c, size_t head_end)
{
    char *head = c->head;
    char *eol = strstr(head, "\r\n");
    char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || strncmp(sp2 + 1, "HTTP/1.", 7))
        return "not an HTTP/1 request";
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    if ((size_t)(sp1 - head) == 7 && !strncmp(head, "CONNECT", 7)) {
        c->tunnel = 1;
        if (parse_authority(c, target, tlen, 0) < 0 || c->port == 0)
            return "CONNECT needs host:port";
        c->up_len = c->head_len - head_end; /* bytes sent ahead of the 200 (rare): forwarded */
        memcpy(c->up, c->head + head_end, c->up_len);
        return NULL;
    }
    const char *path = "/";
    size_t plen = 1;
    size_t hlen;
    const char *hosthdr = header(head, "Host", &hlen);
    if (tlen > 7 && !strncasecmp(target, "http://", 7)) {
        const char *auth = target + 7;
        const char *slash = memchr(auth, '/', tlen - 7);
        const char *q = memchr(auth, '?', tlen - 7);
        const char *aend = slash && (!q || slash < q) ? slash : q ? q : target + tlen;
        if (memchr(auth, '@', (size_t)(aend - auth)))
            return "user information in the URI";
        if (parse_authority(c, auth, (size_t)(aend - auth), 80) < 0)
            return "bad host in the URI";
        if (aend < target + tlen) {
            path = aend;
            plen = (size_t)(target + tlen - aend);
        }
        /* A Host header naming another site would reach it on the allowed one's address (a
         * shared front end serves both). */
        if (hosthdr) {
            struct conn other;
            if (parse_authority(&other, hosthdr, hlen, 80) < 0 || strcmp(other.host, c->host) || other.port != c->port)
                return "the Host header names another host than the URI";
        }
    } else if (target[0] == '/') {
        if (!hosthdr || parse_authority(c, hosthdr, hlen, 80) < 0)
            return "no Host header";
        path = target;
        plen = tlen;
    } else {
        return "only CONNECT and http:// requests go through the proxy";
    }
    /* The request line in origin form, the end-to-end headers, `Connection: close`, the body so far. */
    size_t o = 0, cap = PROXY_BUF;
    int n = snprintf(c->up, cap, "%.*s %.*s %.*s\r\n", (int)(sp1 - head), head, (int)plen, path, (int)(eol - sp2 - 1),
                     sp2 + 1);
    if (n < 0 || (size_t)n >= cap)
        return "request line too long";
    o = (size_t)n;
    for (char *l = eol + 2; l < head + head_end - 2;) {
        char *le = strstr(l, "\r\n");
        size_t ll = (size_t)(le - l) + 2;
        if (!hop_by_hop(l)) {
            if (o + ll >= cap)
                return "request head too large";
            memcpy(c->up + o, l, ll);
            o += ll;
        }
        l = le + 2;
    }
    static const char close_hdr[] = "Connection: close\r\n\r\n";
    size_t body = c->head_len - head_end;
    if (o + sizeof close_hdr - 1 + body > cap)
        return "request head too large";
    memcpy(c->up + o, close_hdr, sizeof close_hdr - 1);
    o += sizeof close_hdr - 1;
    memcpy(c->up + o, c->head + head_end, body);
    c->up_len = o + body;
    return NULL;
}

/* ---------- connections ---------- */

static void reply(int fd, const char *status, const char *why)
{
    char buf[512];
    int n = snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nproctor: %s\n",
                     status, why);
    if (n > 0)
        (void)send(fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void record(struct proxy *p, struct conn *c, const char *decision, const char *detail)
{
    long long ms = 0;
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
        ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    psb_emit(NET, PSB_I(ms), PSB_T(c->host), PSB_I(c->port), PSB_T(decision), PSB_T(detail),
             PSB_I(c->bytes_up), PSB_I(c->bytes_down));
}

static void conn_free(struct conn *c)
{
    if (c->client >= 0)
        close(c->client);
    if (c->upstream >= 0)
        close(c->upstream);
    free(c->head);
    free(c->up);
    free(c->down);
    memset(c, 0, sizeof *c);
    c->state = C_FREE;
    c->client = c->upstream = -1;
}

/* Refused: the client hears why, the supervisor gets the record (up to a cap, then a count). */
static void deny(struct proxy *p, struct conn *c, const char *why)
{
    reply(c->client, "403 Forbidden", why);
    if (p->denied++ < PROXY_DENY_RECORDS_MAX)
        record(p, c, "denied", why);
    else
        p->dropped++;
    conn_free(c);
}

static void finish(struct proxy *p, struct conn *c, const char *detail)
{
    record(p, c, "allowed", detail);
    conn_free(c);
}

/* The next address of the destination, connecting without blocking; when none is left, a 502. */
static void connect_next(struct proxy *p, struct conn *c, int last_err)
{
    while (c->next_addr < c->naddrs) {
        struct sockaddr_storage *a = &c->addrs[c->next_addr++];
        socklen_t len = a->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        if (a->ss_family == AF_INET)
            ((struct sockaddr_in *)a)->sin_port = htons((uint16_t)c->port);
        else
            ((struct sockaddr_in6 *)a)->sin6_port = htons((uint16_t)c->port);
        int s = socket(a->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0) {
            last_err = errno;
            continue;
        }
        if (connect(s, (struct sockaddr *)a, len) == 0 || errno == EINPROGRESS) {
            c->upstream = s;
            c->state = C_CONNECTING;
            return;
        }
        last_err = errno;
        close(s);
    }
    char why[128];
    snprintf(why, sizeof why, "connect failed: %s", strerror(last_err ? last_err : ECONNREFUSED));
    reply(c->client, "502 Bad Gateway", why);
    finish(p, c, why);
}

/* A complete request head: the allowlist, then the addresses, then the connection. */
static void decide(struct proxy *p, struct conn *c, size_t head_end)
{
    const char *why = parse_request(c, head_end);
    if (why) {
        deny(p, c, why);
        return;
    }
    if (!allowed(p->cfg, c->host, c->port)) {
        deny(p, c, "not in allow_hosts");
        return;
    }
    why = resolve(p, c);
    if (why) {
        deny(p, c, why);
        return;
    }
    for (int i = 0; i < c->naddrs; i++) {
        int always;
        const char *cls = address_class(p, &c->addrs[i], &always);
        if (cls && (always || !p->cfg->allow_private)) {
            char addr[INET6_ADDRSTRLEN], msg[256];
            addr_text(&c->addrs[i], addr, sizeof addr);
            /* "the host's own address", "an IPv4-compatible address", "a private address" */
            const char *article = strncmp(cls, "the ", 4) == 0 ? "" : strchr("aeiouAEIOU", cls[0]) ? "an " : "a ";
            snprintf(msg, sizeof msg, "resolves to %s, %s%s address%s", addr, article, cls, always ? "" : " (allow_private = false)");
            deny(p, c, msg);
            return;
        }
    }
    c->deadline = psb_now_ms() + PROXY_CONNECT_TIMEOUT_MS;
    connect_next(p, c, 0);
}

static void on_request_bytes(struct proxy *p, struct conn *c)
{
    ssize_t k = recv(c->client, c->head + c->head_len, PROXY_HEAD_MAX - c->head_len, MSG_DONTWAIT);
    if (k <= 0) {
        if (k == 0 || (errno != EAGAIN && errno != EINTR))
            conn_free(c); /* gone before asking for anything: nothing was refused */
        return;
    }
    c->head_len += (size_t)k;
    c->head[c->head_len] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (end)
        decide(p, c, (size_t)(end + 4 - c->head));
    else if (c->head_len >= PROXY_HEAD_MAX || memchr(c->head, 0, c->head_len))
        deny(p, c, "request head too large or not text");
}

static void on_connected(struct proxy *p, struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->upstream, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        close(c->upstream);
        c->upstream = -1;
        connect_next(p, c, err);
        return;
    }
    c->state = C_RELAY;
    if (c->tunnel) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        memcpy(c->down, ok, sizeof ok - 1);
        c->down_len = sizeof ok - 1;
        c->bytes_down -= (long long)(sizeof ok - 1); /* the proxy's own words are not the destination's */
    }
}

/* Reads from `fd` into its buffer when that is empty; *eof at the end or on an error. */
static void fill(int fd, char *buf, size_t *len, size_t *off, int *eof)
{
    if (*len != 0 || *eof)
        return;
    ssize_t k = recv(fd, buf, PROXY_BUF, MSG_DONTWAIT);
    if (k > 0) {
        *len = (size_t)k;
        *off = 0;
    } else if (k == 0 || (errno != EAGAIN && errno != EINTR))
        *eof = 1;
}

/* Writes what is pending to `fd`, counting it in *count; -1 when the connection is broken. */
static int drain(int fd, const char *buf, size_t *len, size_t *off, long long *count)
{
    if (*len <= *off)
        return 0;
    ssize_t k = send(fd, buf + *off, *len - *off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k > 0) {
        *off += (size_t)k;
        *count += k;
    } else if (k < 0 && errno != EAGAIN && errno != EINTR)
        return -1;
    if (*off == *len)
        *len = *off = 0;
    return 0;
}

/* Moves bytes one step each way. Returns -1 when the connection is over. */
static int relay(struct conn *c, short cre, short ure)
{
    if (cre & (POLLIN | POLLHUP | POLLERR))
        fill(c->client, c->up, &c->up_len, &c->up_off, &c->client_eof);
    if (ure & (POLLIN | POLLHUP | POLLERR))
        fill(c->upstream, c->down, &c->down_len, &c->down_off, &c->upstream_eof);
    if (drain(c->upstream, c->up, &c->up_len, &c->up_off, &c->bytes_up) < 0 ||
        drain(c->client, c->down, &c->down_len, &c->down_off, &c->bytes_down) < 0)
        return -1;
    /* A client that hung up entirely can be sent nothing more. */
    if (c->client_eof && (cre & (POLLHUP | POLLERR)))
        return -1;
    /* Half-close passes through; the destination done and nothing pending ends it. */
    if (c->client_eof && c->up_len == 0 && !c->up_shut) {
        shutdown(c->upstream, SHUT_WR);
        c->up_shut = 1;
    }
    if (c->upstream_eof && c->down_len == 0)
        return -1; /* the destination is done: the client has everything */
    return 0;
}

static void on_accept(struct proxy *p)
{
    int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct conn *c = NULL;
    for (int i = 0; i < PROXY_MAX_CONNS && !c; i++)
        if (p->conns[i].state == C_FREE)
            c = &p->conns[i];
    struct conn spare;
    if (!c) {
        memset(&spare, 0, sizeof spare);
        spare.client = fd;
        spare.upstream = -1;
        deny(p, &spare, "too many open connections");
        return;
    }
    memset(c, 0, sizeof *c);
    c->client = fd;
    c->upstream = -1;
    c->head = malloc(PROXY_HEAD_MAX + 1);
    c->up = malloc(PROXY_BUF);
    c->down = malloc(PROXY_BUF);
    if (!c->head || !c->up || !c->down) {
        conn_free(c);
        return;
    }
    c->state = C_REQUEST;
    c->deadline = psb_now_ms() + PROXY_HEAD_TIMEOUT_MS;
}

static void proxy_loop(struct proxy *p)
{
    static struct pollfd pf[1 + 2 * PROXY_MAX_CONNS];
    static int who[1 + 2 * PROXY_MAX_CONNS]; /* connection index; -1 the listener */
    static char upstream_side[1 + 2 * PROXY_MAX_CONNS];
    sigset_t none;
    sigemptyset(&none);
    while (!stop_requested) {
        int n = 0;
        pf[n] = (struct pollfd){p->listen_fd, POLLIN, 0};
        who[n++] = -1;
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            struct conn *c = &p->conns[i];
            if (c->state == C_FREE)
                continue;
            short ce = 0, ue = 0;
            if (c->state == C_REQUEST)
                ce = POLLIN;
            if (c->state == C_CONNECTING)
                ue = POLLOUT;
            if (c->state == C_RELAY) {
                ce = (short)((c->up_len == 0 && !c->client_eof ? POLLIN : 0) | (c->down_len ? POLLOUT : 0));
                ue = (short)((c->down_len == 0 && !c->upstream_eof ? POLLIN : 0) | (c->up_len ? POLLOUT : 0));
            }
            /* A side nothing is asked of is not polled (a negative descriptor): poll reports an error
             * or a hang-up whatever was asked, and a client reset while its bytes waited for the
             * destination (or while it connected) woke this loop at once, forever: a host core
             * spent outside the sandbox's limits. It is found when that side is next read. */
            pf[n] = (struct pollfd){ce ? c->client : -1, ce, 0};
            upstream_side[n] = 0;
            who[n++] = i;
            if (c->upstream >= 0) {
                pf[n] = (struct pollfd){ue ? c->upstream : -1, ue, 0};
                upstream_side[n] = 1;
                who[n++] = i;
            }
        }
        struct timespec tick = {1, 0};
        /* SIGTERM is blocked except while waiting here: no stop request is lost between checks. */
        int r = ppoll(pf, (nfds_t)n, &tick, &none);
        if (r < 0 && errno != EINTR)
            break;
        long long now = psb_now_ms();
        /* Each connection's events, client's and destination's, then one step for each. */
        static short cre[PROXY_MAX_CONNS], ure[PROXY_MAX_CONNS];
        memset(cre, 0, sizeof cre);
        memset(ure, 0, sizeof ure);
        int accept_ready = 0;
        for (int k = 0; k < n && r > 0; k++) {
            if (who[k] < 0)
                accept_ready = pf[k].revents != 0;
            else if (!upstream_side[k])
                cre[who[k]] = pf[k].revents;
            else
                ure[who[k]] = pf[k].revents;
        }
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            struct conn *c = &p->conns[i];
            if (c->state == C_REQUEST && cre[i])
                on_request_bytes(p, c);
            else if (c->state == C_CONNECTING && ure[i])
                on_connected(p, c);
            else if (c->state == C_RELAY && (cre[i] || ure[i]) && relay(c, cre[i], ure[i]) < 0)
                finish(p, c, "");
        }
        if (accept_ready)
            on_accept(p);
        for (int i = 0; i < PROXY_MAX_CONNS; i++) {
            struct conn *c = &p->conns[i];
            if (c->state == C_REQUEST && now >= c->deadline)
                deny(p, c, "no complete request in time");
            else if (c->state == C_CONNECTING && now >= c->deadline) {
                reply(c->client, "504 Gateway Timeout", "connect timed out");
                finish(p, c, "connect timed out");
            }
        }
    }
    /* The run is over: what was open is counted as it stands. */
    for (int i = 0; i < PROXY_MAX_CONNS; i++)
        if (p->conns[i].state == C_CONNECTING || p->conns[i].state == C_RELAY)
            finish(p, &p->conns[i], "open when the run ended");
    if (p->dropped) {
        struct conn c;
        memset(&c, 0, sizeof c);
        char why[96];
        snprintf(why, sizeof why, "%lld further refused connections counted, not recorded", p->dropped);
        c.bytes_up = p->dropped;
        record(p, &c, "dropped", why);
    }
}

pid_t psb_proxy_start(const struct psb_config *cfg, int listen_fd)
{
    /* Read before the fork, so that a test resolver file that cannot be read fails the setup. */
    static struct proxy p;
    p.cfg = cfg;
    p.listen_fd = listen_fd;
    for (int i = 0; i < PROXY_MAX_CONNS; i++)
        p.conns[i].client = p.conns[i].upstream = -1;
    load_own_addresses(&p);
    if (cfg->proxy_hosts && load_hosts(&p, cfg->proxy_hosts) < 0) {
        dprintf(2, "proctor-sandbox: read %s: %s (stage: network)\n", cfg->proxy_hosts, strerror(errno));
        errno = ENOENT;
        return -1;
    }
    pid_t helper = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* It dies with the helper, whatever ends it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != helper)
        _exit(0);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, SIG_IGN); /* a terminal's ^C is the helper's to act on; it ends this with SIGTERM */
    signal(SIGHUP, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    /* Nothing of the helper's but the listener, the report channel and stdio. */
    int keep[2], nkeep = 0;
    if (psb_report_fd >= 0 && psb_report_fd < listen_fd)
        keep[nkeep++] = psb_report_fd;
    keep[nkeep++] = listen_fd;
    if (psb_report_fd > listen_fd)
        keep[nkeep++] = psb_report_fd;
    psb_close_fds_except(keep, nkeep);
    fcntl(listen_fd, F_SETFL, O_NONBLOCK);
    proxy_loop(&p);
    _exit(0);
}

void psb_proxy_stop(pid_t proxy)
{
    kill(proxy, SIGTERM);
    /* Its records come first; a proxy that does not end within 2 s is killed. */
    for (int i = 0; i < 200; i++) {
        if (waitpid(proxy, NULL, WNOHANG) == proxy)
            return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(proxy, SIGKILL);
    (void)waitpid(proxy, NULL, 0);
}
