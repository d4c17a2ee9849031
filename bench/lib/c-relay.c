// A bare relay in C, for scenario 3: what a verifying mirror costs when its byte path is
// native. The C twin of bun-relay.ts with a store dir, doing the same work and no more:
// each request goes to the upstream, a blob redirect is followed here (without the
// Authorization header), and a blob body is hashed (SHA-256, OpenSSL) and written to a
// file as it is relayed; its last byte is held back until the digest matches (the
// connection is cut otherwise). No cache, no single-flight, no resume.
//
//   cc -O2 -pthread -o c-relay c-relay.c -lcrypto
//   c-relay <port> <upstream http://host:port> <store dir>
//
// One thread per connection, one request per connection (the bench client sends
// Connection: close), blocking I/O through a 1 MiB buffer. Only plain http:// upstreams.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX 65536
#define BODY_BUF (1 << 20)

static const char *upstream_hostport;
static const char *store_dir;

struct head {
  char buf[HEAD_MAX];
  size_t len;      // bytes in buf
  size_t head_len; // up to and including the blank line
};

static int write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

// Reads until the end of an HTTP head; bytes after it stay in h->buf[head_len..len).
static int read_head(int fd, struct head *h) {
  h->len = 0;
  for (;;) {
    if (h->len >= sizeof h->buf - 1) return -1;
    ssize_t n = read(fd, h->buf + h->len, sizeof h->buf - 1 - h->len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    h->len += (size_t)n;
    h->buf[h->len] = 0;
    char *end = strstr(h->buf, "\r\n\r\n");
    if (end) {
      h->head_len = (size_t)(end - h->buf) + 4;
      return 0;
    }
  }
}

// The value of header `name` in a head (case-insensitive), copied into out; 0 if found.
static int header_value(const struct head *h, const char *name, char *out, size_t out_len) {
  size_t name_len = strlen(name);
  const char *line = strstr(h->buf, "\r\n");
  while (line && line + 2 < h->buf + h->head_len) {
    line += 2;
    if (strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
      const char *v = line + name_len + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = (size_t)(e - v);
      if (n >= out_len) n = out_len - 1;
      memcpy(out, v, n);
      out[n] = 0;
      return 0;
    }
    line = strstr(line, "\r\n");
  }
  return -1;
}

static int connect_to(const char *hostport) {
  char host[256];
  const char *colon = strrchr(hostport, ':');
  if (!colon || (size_t)(colon - hostport) >= sizeof host) return -1;
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = 0;
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(colon + 1))};
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Sends `method target` to hostport with the client's headers, minus Host and Connection
// (and Authorization when `drop_auth`); returns the upstream socket with its response head read.
static int ask_upstream(const char *hostport, const char *method, const char *target, const struct head *client, int drop_auth, struct head *response) {
  int fd = connect_to(hostport);
  if (fd < 0) return -1;
  char *req = malloc(HEAD_MAX + 8192);
  int n = snprintf(req, 8192, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, hostport);
  const char *line = strstr(client->buf, "\r\n") + 2;
  const char *end = client->buf + client->head_len - 2;
  while (line < end) {
    const char *e = strstr(line, "\r\n");
    int skip = strncasecmp(line, "host:", 5) == 0 || strncasecmp(line, "connection:", 11) == 0 || (drop_auth && strncasecmp(line, "authorization:", 14) == 0);
    if (!skip) {
      memcpy(req + n, line, (size_t)(e + 2 - line));
      n += (int)(e + 2 - line);
    }
    line = e + 2;
  }
  memcpy(req + n, "\r\n", 2);
  n += 2;
  int ok = write_all(fd, req, (size_t)n) == 0 && read_head(fd, response) == 0;
  free(req);
  if (!ok) {
    close(fd);
    return -1;
  }
  return fd;
}

static int status_of(const struct head *h) {
  const char *sp = strchr(h->buf, ' ');
  return sp ? atoi(sp + 1) : 0;
}

// Relays a blob body of `length` bytes: hash, write to the file, send; the last byte only if the digest matches.
static int relay_blob(int up, int client, const struct head *response, long long length, const char *hex) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", store_dir, hex);
  int file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (file < 0) return -1;
  EVP_MD_CTX *sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
  char *buf = malloc(BODY_BUF);
  long long done = 0;
  int result = -1;
  // Body bytes that arrived with the head come first.
  size_t pending = response->len - response->head_len;
  memcpy(buf, response->buf + response->head_len, pending);
  for (;;) {
    size_t n = pending;
    pending = 0;
    if (n == 0 && done < length) {
      ssize_t r = read(up, buf, BODY_BUF);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      n = (size_t)r;
    }
    if (done + (long long)n > length) break;
    EVP_DigestUpdate(sha, buf, n);
    if (write_all(file, buf, n) < 0) break;
    done += (long long)n;
    if (done < length) {
      if (write_all(client, buf, n) < 0) break;
      continue;
    }
    // The last read: everything but its last byte, then the verdict.
    if (n > 1 && write_all(client, buf, n - 1) < 0) break;
    if (n == 0) break; // an empty blob: its head already went out
    unsigned char md[32];
    unsigned int md_len = 0;
    EVP_DigestFinal_ex(sha, md, &md_len);
    char got[65];
    for (int i = 0; i < 32; i++) sprintf(got + 2 * i, "%02x", md[i]);
    if (strcmp(got, hex) == 0 && write_all(client, buf + n - 1, 1) == 0) result = 0;
    break;
  }
  free(buf);
  EVP_MD_CTX_free(sha);
  close(file);
  return result;
}

// Any other body: bytes as they come until the upstream closes (it was asked to).
static void relay_rest(int up, int client, const struct head *response) {
  if (write_all(client, response->buf + response->head_len, response->len - response->head_len) < 0) return;
  char *buf = malloc(BODY_BUF);
  for (;;) {
    ssize_t r = read(up, buf, BODY_BUF);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || write_all(client, buf, (size_t)r) < 0) break;
  }
  free(buf);
}

static void *serve_connection(void *arg) {
  int client = (int)(long)arg;
  struct head *req = malloc(sizeof *req), *res = malloc(sizeof *res);
  char method[16], target[4096], location[4096], value[64], hex[65] = "";
  int up = -1;
  if (read_head(client, req) < 0 || sscanf(req->buf, "%15s %4095s", method, target) != 2) goto done;
  if (strcmp(target, "/_relay/ready") == 0) {
    const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    write_all(client, ok, sizeof ok - 1);
    goto done;
  }
  up = ask_upstream(upstream_hostport, method, target, req, 0, res);
  if (up < 0) goto done;
  int status = status_of(res);
  if (status >= 300 && status < 400 && header_value(res, "location", location, sizeof location) == 0 && strncmp(location, "http://", 7) == 0) {
    close(up);
    char *path = strchr(location + 7, '/');
    char hostport[256];
    size_t host_len = path ? (size_t)(path - (location + 7)) : strlen(location + 7);
    if (host_len >= sizeof hostport) goto done;
    memcpy(hostport, location + 7, host_len);
    hostport[host_len] = 0;
    up = ask_upstream(hostport, method, path ? path : "/", req, 1, res);
    if (up < 0) goto done;
    status = status_of(res);
  }
  // The head goes to the client as it came; the client asked for Connection: close too.
  if (write_all(client, res->buf, res->head_len) < 0) goto done;
  if (strcmp(method, "HEAD") == 0 || status == 204 || status == 304) goto done;
  const char *blob = strstr(target, "/blobs/sha256:");
  long long length = header_value(res, "content-length", value, sizeof value) == 0 ? atoll(value) : -1;
  if (status == 200 && blob && strlen(blob + 14) == 64 && length >= 0) {
    memcpy(hex, blob + 14, 64);
    hex[64] = 0;
    relay_blob(up, client, res, length, hex);
  } else {
    relay_rest(up, client, res);
  }
done:
  if (up >= 0) close(up);
  close(client);
  free(req);
  free(res);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: c-relay <port> <upstream host:port> <store dir>\n");
    return 2;
  }
  upstream_hostport = strncmp(argv[2], "http://", 7) == 0 ? argv[2] + 7 : argv[2];
  store_dir = argv[3];
  signal(SIGPIPE, SIG_IGN);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 128) < 0) {
    perror("c-relay: listen");
    return 1;
  }
  fprintf(stderr, "c relay on %s → %s, storing in %s\n", argv[1], upstream_hostport, store_dir);
  for (;;) {
    int client = accept(listener, NULL, NULL);
    if (client < 0) continue;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve_connection, (void *)(long)client) != 0) {
      close(client);
      continue;
    }
    pthread_detach(thread);
  }
}
