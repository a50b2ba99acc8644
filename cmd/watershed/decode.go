package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/watershed-io/watershed/codecs/protocol"
)

// maxDecodeInput bounds what decode reads: the largest package (a version 2
// header and a 1 MiB body), as hex text with generous whitespace.
const maxDecodeInput = 4 * (protocol.HeaderLenV2 + protocol.MaxBodyLen)

// runDecode implements `watershed decode [--hex] [FILE]`: it decodes one
// device package from FILE, or stdin, and prints it as JSON in the test
// vectors' form, or {"reject": REASON} for a rejected package. Both exit 0;
// unreadable input (a missing file, bad hex, bad flags) exits 2.
func runDecode(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("decode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	hexIn := fs.Bool("hex", false, "the input is hex text (whitespace is ignored)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: watershed decode [--hex] [FILE]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Decodes one device package from FILE (stdin when none) and prints it as")
		fmt.Fprintln(stderr, "JSON in the form of the protocol's test vectors, or {\"reject\": REASON}.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(stderr, "watershed decode: at most one FILE")
		fs.Usage()
		return 2
	}
	in := stdin
	name := "stdin"
	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		name = fs.Arg(0)
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "watershed decode: %v\n", err)
			return 2
		}
		defer f.Close()
		in = f
	}
	raw, err := io.ReadAll(io.LimitReader(in, maxDecodeInput+1))
	if err != nil {
		fmt.Fprintf(stderr, "watershed decode: read %s: %v\n", name, err)
		return 2
	}
	if len(raw) > maxDecodeInput {
		fmt.Fprintf(stderr, "watershed decode: %s: more than %d bytes, larger than any package\n", name, maxDecodeInput)
		return 2
	}
	pkg := raw
	if *hexIn {
		pkg, err = decodeHexText(raw)
		if err != nil {
			fmt.Fprintf(stderr, "watershed decode: %s: %v\n", name, err)
			return 2
		}
	}
	out, err := protocol.MarshalVectorJSON(protocol.Decode(pkg))
	if err != nil {
		fmt.Fprintf(stderr, "watershed decode: %v\n", err)
		return 1
	}
	out = append(out, '\n')
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "watershed decode: write: %v\n", err)
		return 1
	}
	return 0
}

// decodeHexText decodes hex digits, ignoring whitespace anywhere.
func decodeHexText(b []byte) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, string(b))
	out, err := hex.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("bad hex: %w", err)
	}
	return out, nil
}
