package bpf

// The generated files are committed so that `go build` needs no clang.
// `make generate` rebuilds them with Debian's clang; `make test` fails when
// they no longer match capture.c.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target bpfel -type record -type owner -type counters -type traced capture capture.c -- -O2 -g -Wall -Werror -I include -I /usr/include/x86_64-linux-gnu
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target amd64 -type tls_record -type tls_mapped tls tls.c -- -O2 -g -Wall -Werror -I tlsinclude -I /usr/include/x86_64-linux-gnu
