package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/watershed-io/watershed/edge"
)

// runToken implements `watershed token`: it prints a version 2 device
// token (docs/security.md) on stdout, for provisioning a device.
func runToken(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("token", "token --device ID [--ttl 720h] [--generation N]\n\n"+
		"Prints a version 2 token of the device, signed with its key derived from\n"+
		"the device secret (from WATERSHED_DEVICE_SECRET, a file, or the flag, which\n"+
		"other users of the machine can see).", stderr)
	device := fs.Uint64("device", 0, "device id (decimal, above 0)")
	ttl := fs.Duration("ttl", 720*time.Hour, "how long the token is valid")
	generation := fs.Uint("generation", 0, "key generation: raise it, and list the device with it in the edge's revocation file, to refuse the device's older tokens")
	secretFlag := newSecretFlag(fs, "device-secret", "WATERSHED_DEVICE_SECRET", "device secret", "the edge's device secret", "")
	insecure := fs.Bool("insecure-short-secret", false, fmt.Sprintf("accept a device secret shorter than %d bytes (the demo's)", minSecretLen))
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	secret, err := secretFlag.resolve(newLogger(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "watershed token: %v\n", err)
		return 2
	}
	switch {
	case *device == 0:
		fmt.Fprintln(stderr, "watershed token: --device must be a device id above 0")
		return 2
	case *ttl <= 0:
		fmt.Fprintln(stderr, "watershed token: --ttl must be positive")
		return 2
	case *generation > 1<<32-1:
		fmt.Fprintln(stderr, "watershed token: --generation must fit 32 bits")
		return 2
	case secret == "":
		fmt.Fprintf(stderr, "watershed token: %v\n", errNoSecret(secretFlag))
		return 2
	}
	ef := edgeFlags{insecureShortSecret: *insecure}
	if err := ef.checkSecret("device secret", secret); err != nil {
		fmt.Fprintf(stderr, "watershed token: %v\n", err)
		return 2
	}
	tok, err := edge.TokenV2([]byte(secret), *device, time.Now().Add(*ttl), uint32(*generation))
	if err != nil {
		fmt.Fprintf(stderr, "watershed token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
