package codecs_test

import (
	"bytes"
	"testing"

	"github.com/watershed-io/watershed/codecs"
)

func TestPlainCodecs(t *testing.T) {
	b, _ := codecs.String{}.Encode("héllo")
	if s, err := (codecs.String{}).Decode(b); err != nil || s != "héllo" {
		t.Errorf("string: %q %v", s, err)
	}
	in := []byte{1, 2, 3}
	out, _ := codecs.Bytes{}.Decode(in)
	in[0] = 9
	if !bytes.Equal(out, []byte{1, 2, 3}) {
		t.Errorf("Bytes.Decode shares the caller's buffer: %v", out)
	}
	if out, _ := (codecs.Bytes{}).Decode(nil); out != nil {
		t.Errorf("nil decodes to %v", out)
	}
	type rec struct{ A int }
	j, err := codecs.JSON[rec]{}.Encode(rec{A: 5})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := (codecs.JSON[rec]{}).Decode(j); err != nil || r.A != 5 {
		t.Errorf("json: %+v %v", r, err)
	}
	if _, err := (codecs.JSON[rec]{}).Decode([]byte("{")); err == nil {
		t.Error("bad json decoded")
	}
	if _, err := (codecs.JSON[func()]{}).Encode(func() {}); err == nil {
		t.Error("a func encoded as json")
	}
}
