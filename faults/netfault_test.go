package faults

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strconv"
	"testing"
	"time"
)

// echoServer accepts connections on a loopback port and echoes lines.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// roundTrip sends a line through addr on a new connection and returns the
// answer or the error, waiting at most wait.
func roundTrip(addr string, wait time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp", addr, wait)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

func TestParseProxySpecs(t *testing.T) {
	got, err := ParseProxySpecs("kafka", "127.0.0.1:19391>127.0.0.1:19291, 127.0.0.1:19392>127.0.0.1:19292")
	if err != nil {
		t.Fatal(err)
	}
	want := []ProxySpec{{"kafka-1", "127.0.0.1:19391", "127.0.0.1:19291"}, {"kafka-2", "127.0.0.1:19392", "127.0.0.1:19292"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "127.0.0.1:1", "a>", ">b"} {
		if _, err := ParseProxySpecs("x", bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestProxiesToxics: bytes pass the proxy; a blackhole swallows them
// while it is in place; a reset ends connections; latency delays them; and
// every toxic goes away again.
func TestProxiesToxics(t *testing.T) {
	upstream := echoServer(t)
	ports := NewPorts()
	port, err := ports.Free()
	if err != nil {
		t.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	px, err := NewProxies([]ProxySpec{{Name: "p-1", Listen: listen, Upstream: upstream}})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	if got := px.Listens("p-1"); len(got) != 1 || got[0] != listen {
		t.Fatalf("Listens = %v", got)
	}
	if got, err := roundTrip(listen, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("through the proxy: %q, %v", got, err)
	}

	remove, err := px.Add(Blackhole(), "p-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(listen, 500*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through a blackhole: %q, %v; want a time-out", got, err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(listen, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("after the blackhole: %q, %v", got, err)
	}

	remove, err = px.Add(Reset(), "p-1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := roundTrip(listen, 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("through resets: %q, %v; want the connection ended", got, err)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}

	remove, err = px.Add(Latency(300, 0), "p-1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got, err := roundTrip(listen, 5*time.Second); err != nil || got != "ping\n" {
		t.Fatalf("through latency: %q, %v", got, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("a round trip through 300 ms of latency each way took %v", took)
	}
	if err := remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := px.Add(Latency(1, 0), "nope"); err == nil {
		t.Fatal("a toxic on an unknown proxy: no error")
	}
}
