package bpf

// The generated files are committed so that `go build` needs no clang.
// `make generate` rebuilds them with Debian's clang; `make test` fails when
// they no longer match capture.c.
//
// One little-endian object (bpfel) serves every little-endian GOARCH, amd64 and arm64 among
// them (see the build constraint of capture_bpfel.go): the programs use no architecture's
// registers or pt_regs. The kernel's <asm/...> headers come from uapi-asm/, which maps them
// to asm-generic instead of the build host's /usr/include/<triplet>/asm, so the object does
// not depend on the machine that generates it.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type record -type owner -type counters -type traced capture capture.c -- -O2 -g -Wall -Werror -I include -I uapi-asm

// classify_probe.c is a test harness for the classifier (classify_probe_test.go);
// only its object is generated, into testdata, so boxtap never embeds it.
//go:generate clang -O2 -g -fdebug-compilation-dir=. -Wall -Werror -target bpfel -I include -I uapi-asm -c classify_probe.c -o testdata/classify_probe.o

// scan_probe.c is the same for the Content-Length scan (scan_probe_test.go).
//go:generate clang -O2 -g -fdebug-compilation-dir=. -Wall -Werror -target bpfel -I include -I uapi-asm -c scan_probe.c -o testdata/scan_probe.o

// tls.c holds the uprobes on TLS libraries; they read registers (pt_regs), so its object is
// generated per architecture (amd64 only so far: tls_other.go reports the rest), with the
// build host's x86 <asm/ptrace.h>.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target amd64 -type tls_record -type tls_mapped tls tls.c -- -O2 -g -Wall -Werror -I tlsinclude -I /usr/include/x86_64-linux-gnu

// gotls.c holds the uprobes on Go's crypto/tls (amd64 register ABI); it shares tls.c's maps,
// which user space passes in when it loads it.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target amd64 gotls gotls.c -- -O2 -g -Wall -Werror -I tlsinclude -I /usr/include/x86_64-linux-gnu
