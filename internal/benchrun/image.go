package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// bigBodySize is the body of the large-response case.
const bigBodySize = 1 << 20

// smallBody is what "/" returns: with nginx's headers the whole response
// stays under 200 bytes.
const smallBody = "hello from boxtap bench\n"

// nginxBinary is Debian's nginx.
const nginxBinary = "/usr/sbin/nginx"

// imageFile is one file of the nginx root filesystem.
type imageFile struct {
	path string // inside the image, absolute
	mode int64
	data []byte
}

// nginxRootfs collects Debian's nginx binary, the shared libraries ldd lists
// for it, the user database nginx's workers need, and a 1 MiB body file.
func nginxRootfs(ctx context.Context) ([]imageFile, error) {
	bin, err := os.ReadFile(nginxBinary)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w; install Debian's nginx (apt-get install nginx)", nginxBinary, err)
	}
	files := []imageFile{{path: nginxBinary, mode: 0o755, data: bin}}
	libs, err := lddPaths(ctx, nginxBinary)
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		b, err := os.ReadFile(lib) // follows symlinks: the image gets the real file under the name ldd printed
		if err != nil {
			return nil, fmt.Errorf("reading shared library %s: %w", lib, err)
		}
		files = append(files, imageFile{path: lib, mode: 0o755, data: b})
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), bigBodySize/16)
	files = append(files,
		imageFile{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")},
		imageFile{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		imageFile{path: "/www/big.bin", mode: 0o644, data: big},
	)
	return files, nil
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// lddPaths lists the absolute library paths ldd prints for bin, the dynamic
// loader included.
func lddPaths(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var paths []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := lddLine.FindStringSubmatch(line); m != nil {
			paths = append(paths, m[1])
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("ldd %s listed no libraries: %q", bin, out)
	}
	return paths, nil
}

// writeRootfsTar writes files as a tar with every parent directory, plus
// the empty directories nginx needs at run time.
func writeRootfsTar(w io.Writer, files []imageFile) error {
	tw := tar.NewWriter(w)
	mtime := time.Unix(0, 0)
	dirs := map[string]bool{}
	var addDir func(string) error
	addDir = func(d string) error {
		if d == "/" || d == "." || dirs[d] {
			return nil
		}
		if err := addDir(filepath.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: mode, ModTime: mtime})
	}
	for _, d := range []string{"/tmp", "/run", "/var/lib/nginx", "/var/log/nginx", "/etc/nginx", "/proc", "/sys", "/dev"} {
		if err := addDir(d); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := addDir(filepath.Dir(f.path)); err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(f.path, "/"), Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ensureImage builds the nginx image with `docker import` unless an image
// with the same content already exists, and returns its reference.
func ensureImage(ctx context.Context) (string, error) {
	files, err := nginxRootfs(ctx)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := writeRootfsTar(&buf, files); err != nil {
		return "", fmt.Errorf("writing the nginx root filesystem: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	ref := "boxtap-bench-nginx:" + hex.EncodeToString(sum[:6])
	if err := exec.CommandContext(ctx, "docker", "image", "inspect", ref).Run(); err == nil {
		return ref, nil
	}
	cmd := exec.CommandContext(ctx, "docker", "import", "-", ref)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker import of the nginx image: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return ref, nil
}

// nginxConfig serves "/" (a small response), "/big" (1 MiB) and the
// stub_status counters on 127.0.0.1:port, in the foreground; with h2Port
// not 0 the same on 127.0.0.1:h2Port in HTTP/2 cleartext (prior knowledge);
// "/" over HTTPS on 127.0.0.1:tlsPort (the image's libssl.so.3).
func nginxConfig(port, h2Port, tlsPort int) string {
	h2Listen := ""
	if h2Port != 0 {
		h2Listen = fmt.Sprintf("\n        listen 127.0.0.1:%d http2 reuseport backlog=4096;", h2Port)
	}
	return fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
user nobody nogroup;
pid /run/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    default_type text/plain;
    server {
        listen 127.0.0.1:%d reuseport backlog=4096;%s
        location = / { return 200 %q; }
        location = /big { alias /www/big.bin; default_type application/octet-stream; }
        location = /nginx_status { stub_status; }
    }
    server {
        listen 127.0.0.1:%[4]d ssl reuseport backlog=4096;
        ssl_certificate %[5]s/cert.pem;
        ssl_certificate_key %[5]s/key.pem;
        location = / { return 200 %[3]q; }
    }
}
`, port, h2Listen, smallBody, tlsPort, certDir)
}
