// sslidle: a program with OpenSSL linked in statically, for boxtap's tests
// of TLS it cannot read (built stripped) or can (built with symbols).
//
// It creates an SSL_CTX (so libssl is linked in), prints "ready" and waits
// for signals. On SIGUSR1 it forks a child (the kernel tells boxtap) that
// prints "child ready" and waits too. SIGTERM/SIGINT end it.
#define _GNU_SOURCE
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int wait_signal(void)
{
	sigset_t set;
	int sig = 0;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (sigwait(&set, &sig) != 0)
		return SIGTERM;
	return sig;
}

int main(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx)
		return 1;
	printf("ready\n");
	fflush(stdout);
	pid_t child = 0;
	for (;;) {
		int sig = wait_signal();
		if (sig != SIGUSR1)
			break;
		child = fork();
		if (child < 0)
			return 1;
		if (child == 0) {
			printf("child ready\n");
			fflush(stdout);
			wait_signal();
			return 0;
		}
	}
	if (child > 0) {
		kill(child, SIGTERM);
		waitpid(child, NULL, 0);
	}
	SSL_CTX_free(ctx);
	return 0;
}
