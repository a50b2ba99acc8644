package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestRunFailsClearlyWhenServiceIsDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, service := range []string{"kafka", "cassandra"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{"-timeout", "1s", service, addr}, &stdout, &stderr)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1", service, code)
		}
		if stdout.Len() != 0 {
			t.Errorf("%s: printed %q on stdout", service, stdout.String())
		}
		if msg := stderr.String(); !strings.Contains(msg, "probe: "+service+" at "+addr+" not ready") {
			t.Errorf("%s: stderr %q does not say which service is not ready", service, msg)
		}
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"kafka"}, {"zookeeper", "127.0.0.1:2181"}, {"kafka", " , "}, {"-bogus"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

func TestSplitAddrs(t *testing.T) {
	got := splitAddrs(" a:1,,b:2 ,")
	if strings.Join(got, "|") != "a:1|b:2" {
		t.Errorf("splitAddrs = %q", got)
	}
}
