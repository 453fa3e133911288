{
  "targets": [
    {
      "target_name": "periscope_bpf",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/object.cc",
        "src/program.cc",
        "src/map.cc",
        "src/link.cc",
        "src/ring_buffer.cc",
        "src/idle_drain.cc",
        "src/perf_buffer.cc",
        "src/btf.cc",
        "src/probes.cc",
        "src/capabilities.cc",
        "src/namespaces.cc",
        "src/clock.cc",
        "src/heap_trim.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=9", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-Wall", "-Wextra", "-Wno-missing-field-initializers"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
