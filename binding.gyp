{
  "targets": [
    {
      "target_name": "herd_spawn",
      "sources": ["native/spawn.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
