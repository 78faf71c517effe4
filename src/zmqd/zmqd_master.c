/*
 * zmqd --workers N: the master process.
 *
 * It forks N workers that each run the whole loop (competing consumers),
 * forwards SIGTERM, SIGINT (as SIGTERM) and SIGHUP to them, starts a new
 * one a second after one dies, and returns when all have exited after a
 * stop.
 *
 * No signal is ever lost: the handlers only set a flag and write a byte
 * to a pipe (the self-pipe trick) that wakes the master's one poll(), so a
 * signal that arrives while the master forks, reaps or waits to start a
 * replacement is acted on at the next turn of the loop (the pipe is
 * drained before the flags are read: a flag set after that leaves a byte
 * that wakes the next poll). Signals are blocked
 * around fork(): a new worker sets up its own handlers and clean flags
 * before any signal (say the master forwarding a SIGTERM) reaches it.
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zmqd.h"


#define ZMQD_WORKERS_MAX    64
#define ZMQD_RESPAWN_DELAY  1.0


static int                    zmqd_master_pipe[2] = { -1, -1 };
static volatile sig_atomic_t  zmqd_master_term;
static volatile sig_atomic_t  zmqd_master_hup;


static void
zmqd_master_signal(int signo)
{
    int            saved;
    unsigned char  c;

    saved = errno;

    if (signo == SIGTERM || signo == SIGINT) {
        zmqd_master_term = 1;
    } else if (signo == SIGHUP) {
        zmqd_master_hup = 1;
    }

    /* a wake-up only: a full pipe will wake the poll all the same */
    c = (unsigned char) signo;
    if (write(zmqd_master_pipe[1], &c, 1) < 0) {
        /* void */
    }

    errno = saved;
}


/* the master's end of things in a new worker, before signals reach it */
static void
zmqd_master_leave(void (*worker_init)(void))
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);

    close(zmqd_master_pipe[0]);
    close(zmqd_master_pipe[1]);
    zmqd_master_pipe[0] = zmqd_master_pipe[1] = -1;

    worker_init();
}


/* forks worker i: the child returns 0, the master the pid or -1 */
static pid_t
zmqd_spawn(int i, void (*worker_init)(void))
{
    pid_t     pid;
    sigset_t  all, old;

    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);

    pid = fork();
    if (pid == 0) {
        zmqd_worker = i;
        zmqd_master_leave(worker_init);
    }

    if (pid < 0) {
        zmqd_log("error", "master: fork: %s", strerror(errno));
    }

    sigprocmask(SIG_SETMASK, &old, NULL);
    return pid;
}


int
zmqd_master(int n, void (*worker_init)(void), int *in_worker)
{
    int               i, alive, stopping, timeout, status;
    pid_t             pids[ZMQD_WORKERS_MAX], pid;
    double            due[ZMQD_WORKERS_MAX], now, next;
    unsigned char     wake[64];
    struct pollfd     pfd;
    struct sigaction  sa;

    *in_worker = 0;
    zmqd_master_term = 0;
    zmqd_master_hup = 0;

    if (n > ZMQD_WORKERS_MAX) {
        n = ZMQD_WORKERS_MAX;
    }

    if (pipe(zmqd_master_pipe) != 0) {
        zmqd_log("error", "master: pipe: %s", strerror(errno));
        return 1;
    }

    for (i = 0; i < 2; i++) {
        (void) fcntl(zmqd_master_pipe[i], F_SETFL,
                     fcntl(zmqd_master_pipe[i], F_GETFL) | O_NONBLOCK);
        (void) fcntl(zmqd_master_pipe[i], F_SETFD, FD_CLOEXEC);
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = zmqd_master_signal;
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);

    for (i = 0; i < n; i++) {
        due[i] = 0;
        pids[i] = zmqd_spawn(i, worker_init);
        if (pids[i] == 0) {
            *in_worker = 1;
            return 0;
        }
        if (pids[i] < 0) {
            pids[i] = 0;
            due[i] = zmqd_now() + ZMQD_RESPAWN_DELAY;
        }
    }

    zmqd_log("info", "master: %d worker(s) started", n);

    stopping = 0;

    for ( ;; ) {
        /* sleep until a signal, or until a replacement is due */
        next = -1;
        for (i = 0; i < n && !stopping; i++) {
            if (pids[i] == 0 && due[i] > 0 && (next < 0 || due[i] < next)) {
                next = due[i];
            }
        }

        now = zmqd_now();
        timeout = next < 0 ? -1
                  : next <= now ? 0
                  : (int) ((next - now) * 1000) + 1;

        pfd.fd = zmqd_master_pipe[0];
        pfd.events = POLLIN;
        pfd.revents = 0;

        if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) {
            zmqd_log("error", "master: poll: %s", strerror(errno));
            (void) usleep(100000);
        }

        /* drained first, then the flags: nothing set after is missed */
        while (read(zmqd_master_pipe[0], wake, sizeof(wake)) > 0) {
            /* void */
        }

        if (zmqd_master_term && !stopping) {
            zmqd_log("info", "master: stopping the workers");
            stopping = 1;
            for (i = 0; i < n; i++) {
                if (pids[i] > 0) {
                    kill(pids[i], SIGTERM);
                }
            }
        }

        if (zmqd_master_hup) {
            zmqd_master_hup = 0;
            for (i = 0; i < n && !stopping; i++) {
                if (pids[i] > 0) {
                    kill(pids[i], SIGHUP);
                }
            }
        }

        /* every worker that exited, whatever woke the master */
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (i = 0; i < n; i++) {
                if (pids[i] != pid) {
                    continue;
                }

                pids[i] = 0;

                if (!stopping) {
                    zmqd_log("error", "worker %d exited (%s %d); starting "
                             "another in %.0f s", (int) pid,
                             WIFSIGNALED(status) ? "signal" : "status",
                             WIFSIGNALED(status) ? WTERMSIG(status)
                                                 : WEXITSTATUS(status),
                             ZMQD_RESPAWN_DELAY);
                    due[i] = zmqd_now() + ZMQD_RESPAWN_DELAY;
                }
            }
        }

        alive = 0;
        now = zmqd_now();

        for (i = 0; i < n; i++) {
            if (pids[i] == 0 && !stopping && due[i] > 0 && due[i] <= now) {
                pids[i] = zmqd_spawn(i, worker_init);
                if (pids[i] == 0) {
                    *in_worker = 1;
                    return 0;
                }
                if (pids[i] < 0) {
                    pids[i] = 0;
                    due[i] = now + ZMQD_RESPAWN_DELAY;
                } else {
                    due[i] = 0;
                }
            }
            alive += pids[i] > 0;
        }

        if (stopping && alive == 0) {
            break;
        }
    }

    close(zmqd_master_pipe[0]);
    close(zmqd_master_pipe[1]);

    zmqd_log("info", "master: every worker has exited");
    return 0;
}
