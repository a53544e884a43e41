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

typedef struct watch watch_t;

typedef struct {
  napi_env env;
  uv_loop_t *loop;
  napi_ref on_exit;
  napi_async_context async;
  // Children still watched. The instance lives until the spawn function is
  // collected and none is left, or until the environment is torn down.
  watch_t *watches;
  unsigned live;
  int collected;
  // The environment is being torn down: N-API may no longer be called.
  int torn_down;
} instance_t;

struct watch {
  uv_poll_t poll;
  instance_t *inst;
  watch_t *prev, *next;
  pid_t pid;
  int pidfd;
};

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      napi_throw_error(env, NULL, "herd spawn: N-API call failed: " #call); \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

static void cleanup(void *data);

static void release(instance_t *inst) {
  napi_remove_env_cleanup_hook(inst->env, cleanup, inst);
  napi_delete_reference(inst->env, inst->on_exit);
  napi_async_destroy(inst->env, inst->async);
  free(inst);
}

// Stops watching: the pidfd is closed, the handle freed once libuv lets go of it.
static void unwatch(watch_t *w) {
  instance_t *inst = w->inst;
  if (w->prev) w->prev->next = w->next;
  else inst->watches = w->next;
  if (w->next) w->next->prev = w->prev;
  inst->live--;
  uv_poll_stop(&w->poll);
  close(w->pidfd);
  // The handle is the watch's first member. libc's free, not a function of this
  // addon: a worker's addons are unloaded before its loop runs the close callbacks.
  uv_close((uv_handle_t *)&w->poll, (uv_close_cb)(void (*)(void))free);
}

// The environment is going away (the process exits, or a worker thread ends):
// no handle may be left on its loop, and nothing can be reported any more.
static void cleanup(void *data) {
  instance_t *inst = data;
  while (inst->watches) unwatch(inst->watches);
  inst->torn_down = 1;
  // The environment frees its references and contexts itself.
  if (inst->collected) free(inst);
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
  (void)events;
  watch_t *w = (watch_t *)h;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  int r = waitid(P_PIDFD, (id_t)w->pidfd, &info, WEXITED | WNOHANG);
  if (r == 0 && info.si_pid == 0) {
    // Not exited yet. After a poll error libuv has stopped watching: watch again.
    if (status < 0) uv_poll_start(h, UV_READABLE, on_readable);
    return;
  }
  // code -1 and signal 0: the exit could not be read (someone else reaped it).
  int code = -1, sig = 0;
  if (r == 0) {
    if (info.si_code == CLD_EXITED) code = info.si_status;
    else sig = info.si_status;
  }
  pid_t pid = w->pid;
  instance_t *inst = w->inst;
  unwatch(w);
  report(inst, pid, code, sig);
  if (inst->collected && inst->live == 0) release(inst);
}

// A JS array of strings as a NULL-terminated array; NULL (with *err set) if an
// element is not a string or memory runs out.
static char **string_array(napi_env env, napi_value arr, int *err) {
  uint32_t n = 0;
  if (napi_get_array_length(env, arr, &n) != napi_ok) {
    *err = EINVAL;
    return NULL;
  }
  char **out = calloc(n + 1, sizeof(char *));
  if (!out) {
    *err = ENOMEM;
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    if (napi_get_element(env, arr, i, &v) != napi_ok || napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
      *err = EINVAL;
      goto fail;
    }
    if (!(out[i] = malloc(len + 1))) {
      *err = ENOMEM;
      goto fail;
    }
    napi_get_value_string_utf8(env, v, out[i], len + 1, &len);
  }
  if (n == 0) *err = EINVAL; // no argv[0]
  else return out;
fail:
  for (uint32_t i = 0; i < n; i++) free(out[i]);
  free(out);
  return NULL;
}

static void free_strings(char **a) {
  if (!a) return;
  for (char **p = a; *p; p++) free(*p);
  free(a);
}

// posix_spawn of `file` (a path: src/spawner.ts looks it up in the node's PATH)
// with `argv` and `envp`: its own session (and so its own process
// group), stdin from /dev/null, stdout and stderr on out_fd, every signal at its
// default and none blocked. Every other descriptor of the manager is close-on-exec
// (libuv and Node open them so). Returns 0 or an errno.
static int start(pid_t *pid, const char *file, char **argv, char **envp, int out_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  int err = posix_spawn_file_actions_init(&fa);
  if (err) return err;
  err = posix_spawnattr_init(&at);
  if (err) {
    posix_spawn_file_actions_destroy(&fa);
    return err;
  }
  if (!err) err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
  if (!err) err = posix_spawnattr_setsigmask(&at, &none);
  if (!err) err = posix_spawnattr_setsigdefault(&at, &all);
  if (!err) err = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  if (!err) err = posix_spawn(pid, file, &fa, &at, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  return err;
}

// Watches a started child's pidfd; returns 0 or an errno (the child is then killed and reaped).
static int watch(instance_t *inst, pid_t pid) {
  watch_t *w = malloc(sizeof *w);
  int err = 0;
  int pidfd = -1;
  if (!w) err = ENOMEM;
  else if ((pidfd = pidfd_open(pid)) < 0) err = errno;
  else {
    int r = uv_poll_init(inst->loop, &w->poll, pidfd);
    if (r < 0) err = -r;
  }
  if (err) {
    // A child we cannot watch would never be reaped: kill it (its session's group,
    // which it leads) and reap it here.
    if (pidfd >= 0) close(pidfd);
    free(w);
    kill(-pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return err;
  }
  w->inst = inst;
  w->pid = pid;
  w->pidfd = pidfd;
  w->prev = NULL;
  w->next = inst->watches;
  if (inst->watches) inst->watches->prev = w;
  inst->watches = w;
  inst->live++;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  return 0;
}

// spawn(file, argv, env, outFd) -> pid, or -errno. `argv` includes argv[0]; `env` is
// an array of "KEY=value".
static napi_value Spawn(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value args[4];
  instance_t *inst;
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, (void **)&inst));
  int32_t out_fd = -1;
  if (argc < 4 || napi_get_value_int32(env, args[3], &out_fd) != napi_ok) {
    napi_throw_type_error(env, NULL, "herd spawn: spawn(file, argv, env, outFd)");
    return NULL;
  }
  size_t len = 0;
  CHECK(napi_get_value_string_utf8(env, args[0], NULL, 0, &len));
  char *file = malloc(len + 1);
  int err = 0;
  char **argv = NULL, **envp = NULL;
  if (!file) err = ENOMEM;
  else {
    napi_get_value_string_utf8(env, args[0], file, len + 1, &len);
    argv = string_array(env, args[1], &err);
    if (argv) envp = string_array(env, args[2], &err);
  }
  pid_t pid = -1;
  if (!err) err = start(&pid, file, argv, envp, out_fd);
  free(file);
  free_strings(argv);
  free_strings(envp);
  if (!err) err = watch(inst, pid);
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
  if (inst->torn_down) free(inst);
  else if (inst->live == 0) release(inst);
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
  if (!inst) {
    napi_throw_error(env, NULL, "herd spawn: out of memory");
    return NULL;
  }
  inst->env = env;
  CHECK(napi_get_uv_event_loop(env, &inst->loop));
  CHECK(napi_create_reference(env, fn, 1, &inst->on_exit));
  napi_value name;
  CHECK(napi_create_string_utf8(env, "herd:spawn", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &inst->async));
  CHECK(napi_create_function(env, "spawn", NAPI_AUTO_LENGTH, Spawn, inst, &result));
  CHECK(napi_add_finalizer(env, result, inst, finalize, NULL, NULL));
  CHECK(napi_add_env_cleanup_hook(env, cleanup, inst));
  return result;
}

// kill(pid, signal) -> 0, or -errno. process.kill turns ESRCH into an exception,
// and the manager meets ESRCH once per node: its group is usually empty by the
// time the leader is reaped and the group is sent SIGKILL.
static napi_value Kill(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value args[2];
  CHECK(napi_get_cb_info(env, info, &argc, args, NULL, NULL));
  int32_t pid = 0, sig = 0;
  if (argc < 2 || napi_get_value_int32(env, args[0], &pid) != napi_ok || napi_get_value_int32(env, args[1], &sig) != napi_ok) {
    napi_throw_type_error(env, NULL, "herd spawn: kill(pid, signal)");
    return NULL;
  }
  napi_value result;
  CHECK(napi_create_int32(env, kill(pid, sig) == 0 ? 0 : -errno, &result));
  return result;
}

static napi_value Module(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "init", NAPI_AUTO_LENGTH, Init, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "init", fn);
  if (napi_create_function(env, "kill", NAPI_AUTO_LENGTH, Kill, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "kill", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Module)
