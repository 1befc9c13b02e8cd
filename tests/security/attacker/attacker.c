/* A hostile builder for the security tests. It makes each attempt named by
 * its first argument and writes one line per attempt to $out (or stdout
 * without $out): "NAME=ok" if the kernel allowed it, "NAME=ERRNO-NAME" if
 * not. The tests read those lines; the attacker never decides anything. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <termios.h>
#include <unistd.h>

static FILE *report;

static void result(const char *name, long rc) {
    if (rc >= 0)
        fprintf(report, "%s=ok\n", name);
    else
        fprintf(report, "%s=%s\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
}

static void terminal(void) {
    char c = 'x';
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
    result("open-dev-tty", tty);
    if (tty >= 0) result("tiocsti-dev-tty", ioctl(tty, TIOCSTI, &c));
    for (int fd = 0; fd < 3; fd++) {
        char name[32];
        snprintf(name, sizeof name, "tiocsti-fd%d", fd);
        result(name, ioctl(fd, TIOCSTI, &c));
    }
    /* The request is an unsigned int: high bits must not get it past the filter. */
    result("tiocsti-high-bits", syscall(SYS_ioctl, 1, 0x100000000UL | TIOCSTI, &c));
    result("tioclinux", ioctl(1, TIOCLINUX, &c));
    fprintf(report, "sid=%d\n", (int)getsid(0));
    fprintf(report, "pid=%d\n", (int)getpid());
}

static void syscalls(void) {
    int f = open("probe-file", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (f < 0) { perror("probe-file"); exit(2); }
    result("chmod-setuid", chmod("probe-file", 04755));
    result("chmod-setgid", chmod("probe-file", 02755));
    result("fchmod-setuid", fchmod(f, 04755));
    result("fchmodat-setuid", fchmodat(AT_FDCWD, "probe-file", 04755, 0));
    result("chmod-plain", chmod("probe-file", 0755));
    result("open-creat-setuid", open("probe-created", O_CREAT | O_WRONLY, 04755));
    result("mknod-setuid", mknod("probe-node", S_IFREG | 04755, 0));
    result("open-tmpfile-setuid", open(".", O_TMPFILE | O_WRONLY, 04755));
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    result("io_uring_setup", syscall(SYS_io_uring_setup, 1, &params));
    result("setxattr", setxattr("probe-file", "user.mini", "1", 1, 0));
    result("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1));
    result("add_key", syscall(SYS_add_key, "user", "mini-probe", "v", 1, KEY_SPEC_PROCESS_KEYRING));
    result("request_key", syscall(SYS_request_key, "user", "mini-none", NULL, 0));
    result("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    struct iovec local = {0}, remote = {0};
    result("process_vm_readv", syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0));
    result("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    result("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
    result("personality-no-aslr", personality(ADDR_NO_RANDOMIZE));
    result("personality-query", personality(0xffffffff));
    result("x32-getpid", syscall(0x40000000 | SYS_getpid));
    result("socket-unix", socket(AF_UNIX, SOCK_STREAM, 0));
    int pair[2];
    result("socketpair-unix", socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
}

static void descriptors(void) {
    for (int fd = 3; fd < 1024; fd++)
        if (fcntl(fd, F_GETFD) >= 0) fprintf(report, "fd-%d=open\n", fd);
    fprintf(report, "descriptors=listed\n");
}

int main(int argc, char **argv) {
    char *text = NULL;
    size_t len = 0;
    report = open_memstream(&text, &len);
    if (!report) { perror("report"); return 2; }
    if (argc > 1 && strcmp(argv[1], "terminal") == 0) terminal();
    else if (argc > 1 && strcmp(argv[1], "syscalls") == 0) syscalls();
    else if (argc > 1 && strcmp(argv[1], "descriptors") == 0) descriptors();
    else { fprintf(stderr, "usage: attacker terminal|syscalls|descriptors\n"); return 2; }
    if (fclose(report) != 0) return 2;
    /* The report goes to the log too: a fixed-output build's $out is gone
     * once its hash check fails. */
    fputs(text, stderr);
    const char *out = getenv("out");
    FILE *file = out ? fopen(out, "w") : stdout;
    if (!file) { perror("out"); return 2; }
    fputs(text, file);
    return fclose(file) == 0 ? 0 : 2;
}
