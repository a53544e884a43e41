// herd's process starter: posix_spawn (glibc: clone with CLONE_VM|CLONE_VFORK), and a
// pidfd watched on Node's own event loop to reap each child and report how it ended.
//
// Why not child_process.spawn: libuv forks, which copies the manager's page tables
// (hundreds of V8 heap mappings) for every node, and the child's exec then tears the
// copy down while spawn waits: 1000 spawns from a manager-sized process take 1.1-1.5 s
// and 0.5-0.7 s of its CPU. posix_spawn shares the address space until the exec: the
// same 1000 take 0.75-0.85 s and about 55 ms of the manager's CPU.
//
// The children are not libuv's, so libuv never waits for them (it waits per pid for
// its own); each is reaped here, through its pidfd, exactly once.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

typedef struct {
  napi_env env;
  uv_loop_t *loop;
  napi_ref on_exit;
  napi_async_context async;
  // Children still watched, and whether the spawn function was collected: the
  // instance lives until both say it is no longer needed.
  unsigned live;
  int collected;
} instance_t;

typedef struct {
  uv_poll_t poll;
  instance_t *inst;
  pid_t pid;
  int pidfd;
} watch_t;

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "herd spawn: N-API call failed: " #call); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static void free_watch(uv_handle_t *h) { free(h); }

static void release(instance_t *inst) {
  napi_delete_reference(inst->env, inst->on_exit);
  napi_async_destroy(inst->env, inst->async);
  free(inst);
}

// Calls on_exit(pid, code, signal) on the main thread, as a callback from the event loop.
static void report(instance_t *inst, pid_t pid, int code, int sig) {
  napi_env env = inst->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, recv, argv[3], result;
  napi_get_reference_value(env, inst->on_exit, &fn);
  napi_get_global(env, &recv);
  napi_create_int32(env, pid, &argv[0]);
  napi_create_int32(env, code, &argv[1]);
  napi_create_int32(env, sig, &argv[2]);
  if (napi_make_callback(env, inst->async, recv, fn, 3, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  watch_t *w = (watch_t *)h;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int r = waitid(P_PIDFD, (id_t)w->pidfd, &info, WEXITED | WNOHANG);
  if (r == 0 && info.si_pid == 0) return; // woken early: not exited yet
  // code -1 and signal 0: the exit could not be read (someone else reaped it).
  int code = -1, sig = 0;
  if (r == 0) {
    if (info.si_code == CLD_EXITED) code = info.si_status;
    else sig = info.si_status;
  }
  uv_poll_stop(h);
  close(w->pidfd);
  pid_t pid = w->pid;
  instance_t *inst = w->inst;
  uv_close((uv_handle_t *)h, free_watch);
  inst->live--;
  report(inst, pid, code, sig);
  if (inst->collected && inst->live == 0) release(inst);
}

static char **string_array(napi_env env, napi_value arr, const char *first) {
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok) return NULL;
  size_t off = first ? 1 : 0;
  char **out = calloc(n + off + 1, sizeof(char *));
  if (!out) return NULL;
  if (first) out[0] = strdup(first);
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    napi_get_element(env, arr, i, &v);
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) goto fail;
    out[i + off] = malloc(len + 1);
    if (!out[i + off]) goto fail;
    napi_get_value_string_utf8(env, v, out[i + off], len + 1, &len);
  }
  return out;
fail:
  for (uint32_t i = 0; i < n + off; i++) free(out[i]);
  free(out);
  return NULL;
}

static void free_strings(char **a) {
  if (!a) return;
  for (char **p = a; *p; p++) free(*p);
  free(a);
}

// spawn(file, args, env, outFd) -> pid, or -errno. The child gets its own session
// (and so its own process group), stdin from /dev/null, stdout and stderr on outFd,
// every signal at its default and none blocked; the command is looked up in PATH as
// execvp does. Every other descriptor of the manager is close-on-exec (libuv and
// Node open them so).
static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  instance_t *inst;
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, (void **)&inst));
  size_t len = 0;
  CHECK(napi_get_value_string_utf8(env, args[0], NULL, 0, &len));
  char *file = malloc(len + 1);
  if (!file) return NULL;
  napi_get_value_string_utf8(env, args[0], file, len + 1, &len);
  int32_t out_fd = -1;
  napi_get_value_int32(env, args[3], &out_fd);
  char **argv = string_array(env, args[1], file);
  char **envp = string_array(env, args[2], NULL);
  int err = 0;
  pid_t pid = -1;
  if (!argv || !envp) {
    err = ENOMEM;
  } else {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    err = posix_spawnp(&pid, file, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
  }
  free(file);
  free_strings(argv);
  free_strings(envp);
  if (err == 0) {
    // A child we cannot watch would never be reaped: kill it and report why.
    watch_t *w = malloc(sizeof *w);
    int pidfd = w ? pidfd_open(pid) : -1;
    if (pidfd < 0 || uv_poll_init(inst->loop, &w->poll, pidfd) != 0) {
      err = w == NULL ? ENOMEM : pidfd < 0 ? errno : EINVAL;
      if (pidfd >= 0) close(pidfd);
      free(w);
      kill(-pid, SIGKILL); // its session's group, which it leads
      waitpid(pid, NULL, 0);
    } else {
      w->inst = inst;
      w->pid = pid;
      w->pidfd = pidfd;
      inst->live++;
      uv_poll_start(&w->poll, UV_READABLE, on_readable);
    }
  }
  napi_value result;
  CHECK(napi_create_int32(env, err == 0 ? pid : -err, &result));
  return result;
}

// True where this kernel has pidfds and waitid(P_PIDFD) (Linux 5.4 and later).
static int supported(void) {
  int fd = pidfd_open(getpid());
  if (fd < 0) return 0;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  // Our own pidfd is not a child's: ECHILD means P_PIDFD is understood, EINVAL that it is not.
  int r = waitid(P_PIDFD, (id_t)fd, &info, WEXITED | WNOHANG);
  int ok = r < 0 && errno == ECHILD;
  close(fd);
  return ok;
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance_t *inst = data;
  inst->collected = 1;
  if (inst->live == 0) release(inst);
}

// init(onExit) -> spawn, or null where this kernel cannot watch children by pidfd.
static napi_value Init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value fn;
  CHECK(napi_get_cb_info(env, info, &argc, &fn, NULL, NULL));
  napi_value result;
  if (!supported()) {
    CHECK(napi_get_null(env, &result));
    return result;
  }
  instance_t *inst = calloc(1, sizeof *inst);
  if (!inst) return NULL;
  inst->env = env;
  CHECK(napi_get_uv_event_loop(env, &inst->loop));
  CHECK(napi_create_reference(env, fn, 1, &inst->on_exit));
  napi_value name;
  CHECK(napi_create_string_utf8(env, "herd:spawn", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &inst->async));
  CHECK(napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, inst, &result));
  CHECK(napi_add_finalizer(env, result, inst, finalize, NULL, NULL));
  return result;
}

static napi_value Module(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "init", NAPI_AUTO_LENGTH, Init, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "init", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Module)
