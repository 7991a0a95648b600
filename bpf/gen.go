package bpf

// The generated files are committed so that `go build` needs no clang.
// `make generate` rebuilds them with Debian's clang; `make test` fails when
// they no longer match capture.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type record -type owner -type counters -type traced capture capture.c -- -O2 -g -Wall -Werror -I include -I /usr/include/x86_64-linux-gnu

// classify_probe.c is a test harness for the classifier (classify_probe_test.go);
// only its object is generated, into testdata, so boxtap never embeds it.
//go:generate clang -O2 -g -fdebug-compilation-dir=. -Wall -Werror -target bpfel -I include -I /usr/include/x86_64-linux-gnu -c classify_probe.c -o testdata/classify_probe.o
