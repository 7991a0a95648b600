/* A minimal HTTPS/1.1 server for boxtap's tests, linked statically against
 * OpenSSL (libssl.a): the SSL_* functions are in the executable itself.
 * Usage: tls_static_server PORT CERT KEY. It serves one connection at a
 * time on 127.0.0.1:PORT, each request (a GET without a body) answered
 * with a fixed 200 response on the same keep-alive connection. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char response[] =
	"HTTP/1.1 200 OK\r\n"
	"Content-Type: text/plain\r\n"
	"X-Boxtap-Tls: static\r\n"
	"Content-Length: 15\r\n"
	"\r\n"
	"static over tls";

/* serve answers each request of one connection until the peer closes. */
static void serve(SSL *ssl)
{
	char buf[16384];
	size_t have = 0;

	for (;;) {
		int n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - 1 - have));
		if (n <= 0)
			return;
		have += (size_t)n;
		buf[have] = 0;
		char *end;
		/* Requests may arrive in pieces or several at once. */
		while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
			if (SSL_write(ssl, response, sizeof(response) - 1) <= 0)
				return;
			size_t used = (size_t)(end + 4 - buf);
			memmove(buf, buf + used, have - used + 1);
			have -= used;
		}
		if (have == sizeof(buf) - 1)
			return; /* a request larger than the buffer */
	}
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
		return 2;
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(ls, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(ls, 16) != 0) {
		perror("listen");
		return 1;
	}
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0)
			continue;
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (SSL_accept(ssl) == 1)
			serve(ssl);
		SSL_shutdown(ssl);
		SSL_free(ssl);
		close(fd);
	}
}
