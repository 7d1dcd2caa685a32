// Test subjects for kernel mode: static Go programs (CGO_ENABLED=0), so
// LD_PRELOAD cannot reach them. One binary, several roles:
//
//	ntgo server ADDR          HTTP/1.1 keep-alive server without IdleTimeout
//	ntgo dial ADDR            net.Dial with no timeout; prints the outcome
//	ntgo writer ADDR          writes until an error (to a peer that never reads)
//	ntgo reportsrv ADDR       accepts, reads a request, waits, sendReport writes twice
//	ntgo load URL N C         N keep-alive-less GETs over C workers, prints req/s
//
// Every outcome is one line "RESULT key=value ..." on stdout.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func result(format string, a ...interface{}) {
	fmt.Printf("RESULT "+format+"\n", a...)
}

func server(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	result("listening=%s", ln.Addr())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})}
	srv.Serve(ln)
}

func dial(addr string) {
	t0 := time.Now()
	c, err := net.Dial("tcp", addr)
	ms := time.Since(t0).Milliseconds()
	if err != nil {
		result("dial=error ms=%d err=%q", ms, err.Error())
		os.Exit(3)
	}
	c.Close()
	result("dial=ok ms=%d", ms)
}

func writer(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		result("writer=dialerror err=%q", err.Error())
		os.Exit(3)
	}
	buf := make([]byte, 64<<10)
	var total int64
	for {
		// A blocked Write is where the peer's silence shows: time each.
		t0 := time.Now()
		n, err := c.Write(buf)
		total += int64(n)
		if err != nil {
			result("writer=error bytes=%d stalled_ms=%d err=%q", total, time.Since(t0).Milliseconds(), err.Error())
			os.Exit(3)
		}
	}
}

// sendReport is the call site the broken-pipe backtrace must name.
//
//go:noinline
func sendReport(c net.Conn, part []byte) error {
	_, err := c.Write(part)
	return err
}

func reportsrv(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	result("listening=%s", ln.Addr())
	c, err := ln.Accept()
	if err != nil {
		os.Exit(1)
	}
	r := bufio.NewReader(c)
	r.ReadString('\n')
	time.Sleep(300 * time.Millisecond) // the client leaves meanwhile
	part := make([]byte, 1024)
	for i := 0; i < 20; i++ {
		if err := sendReport(c, part); err != nil {
			result("report=error err=%q", err.Error())
			os.Exit(0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	result("report=ok")
}

// readReply is the call site an econnreset backtrace must name.
//
//go:noinline
func readReply(c net.Conn) (int, error) {
	buf := make([]byte, 4096)
	return c.Read(buf)
}

// ask sends one line (unless ADDR is followed by "quiet") and waits for the
// answer: the client side of read_timeout and of a reset.
func ask(addr string, quiet bool) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		result("ask=dialerror err=%q", err.Error())
		os.Exit(3)
	}
	if !quiet {
		io.WriteString(c, "question\n")
	}
	t0 := time.Now()
	n, err := readReply(c)
	ms := time.Since(t0).Milliseconds()
	if err != nil {
		result("ask=error ms=%d err=%q", ms, err.Error())
		os.Exit(3)
	}
	result("ask=ok ms=%d bytes=%d", ms, n)
}

func load(url string, n, conc int) {
	tr := &http.Transport{DisableKeepAlives: true}
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := 0
	per := n / conc
	t0 := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				resp, err := cl.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					mu.Lock()
					errs++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	result("load=done reqs=%d errors=%d secs=%.3f rps=%.1f", per*conc, errs, secs, float64(per*conc)/secs)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: ntgo server|dial|writer|reportsrv|load ADDR ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2])
	case "dial":
		dial(os.Args[2])
	case "writer":
		writer(os.Args[2])
	case "reportsrv":
		reportsrv(os.Args[2])
	case "ask":
		ask(os.Args[2], len(os.Args) > 3 && os.Args[3] == "quiet")
	case "load":
		n, _ := strconv.Atoi(os.Args[3])
		c, _ := strconv.Atoi(os.Args[4])
		load(os.Args[2], n, c)
	default:
		os.Exit(2)
	}
}
