// Package soakvalue is the shape of the values the soak test writes into the dev vault and
// its reader pods check: each names its key and a sequence number and carries a checksum
// of both, so a reader can tell an empty, partial, foreign or older value from a good one
// without asking anybody. Development only.
package soakvalue

import (
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Format is key's value at sequence number seq.
func Format(key string, seq int) string {
	body := fmt.Sprintf("k=%s;s=%08d", key, seq)
	return fmt.Sprintf("%s;c=%08x", body, crc32.ChecksumIEEE([]byte(body)))
}

// ErrBad is a value that is not a whole, well-formed value of its key.
var ErrBad = errors.New("not a whole value of its key")

// Parse returns the sequence number of v, a value of key.
func Parse(key, v string) (int, error) {
	body, sum, ok := strings.Cut(v, ";c=")
	if !ok || fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body))) != sum {
		return 0, fmt.Errorf("%w (%d bytes, checksum does not match)", ErrBad, len(v))
	}
	k, s, ok := strings.Cut(strings.TrimPrefix(body, "k="), ";s=")
	if !ok || k != key {
		return 0, fmt.Errorf("%w (the value of %q)", ErrBad, k)
	}
	seq, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBad, err)
	}
	return seq, nil
}
