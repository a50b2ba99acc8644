// Command validate checks Kubernetes manifests offline against the
// official API types of k8s.io/api: every document is decoded strictly
// into the Go type of its apiVersion and kind, so an unknown or misspelled
// field, a value of the wrong type, a malformed quantity or a duplicated
// key is an error, as it is for `kubectl apply --validate=strict`. A few
// rules the API server enforces beyond the schema are checked too:
// required fields, names, selectors that match their pod templates,
// container ports that probes and Services name, and autoscaler and
// disruption-budget targets that exist.
//
// It lives in its own module so that the Kubernetes libraries stay out of
// the watershed module. Run it as `go run . ../*.yaml`; it prints every
// problem and exits 1 when there is one.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run validates the files named in args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: validate FILE.yaml...")
		return 2
	}
	var objs []object
	bad := 0
	for _, path := range args {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		got, errs := decodeFile(path, raw)
		objs = append(objs, got...)
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
			bad++
		}
	}
	for _, e := range crossCheck(objs) {
		fmt.Fprintln(stderr, e)
		bad++
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "%d problems in %d objects\n", bad, len(objs))
		return 1
	}
	fmt.Fprintf(stdout, "%d objects in %d files are valid\n", len(objs), len(args))
	return 0
}
