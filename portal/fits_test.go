package portal

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/ztfbroker/ztfbroker/alertcat"
	"github.com/ztfbroker/ztfbroker/avrofile"
)

// realStamps are the gzipped FITS cutouts of the shared real alerts.
func realStamps(t testing.TB) [][]byte {
	t.Helper()
	var files []string
	filepath.WalkDir("../../shared/data/ztf/alerts", func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".avro") {
			files = append(files, p)
		}
		return nil
	})
	codec := &alertcat.Codec{Schemas: avrofile.NewSchemas(0)}
	var out [][]byte
	for _, f := range files {
		b, _ := os.ReadFile(f)
		as, err := codec.Decode(b)
		if err != nil {
			continue
		}
		var m map[string]any
		if avro.Unmarshal(as[0].Schema, as[0].Body, &m) != nil {
			continue
		}
		for _, k := range []string{"cutoutScience", "cutoutTemplate", "cutoutDifference"} {
			if d, _ := record(m, k)["stampData"].([]byte); len(d) > 2 && d[0] == 0x1f {
				out = append(out, d)
			}
		}
	}
	if len(out) < 60 {
		t.Fatalf("%d FITS cutouts in the samples", len(out))
	}
	return out
}

// TestReadRealStamps: every FITS cutout of the real alerts reads as an
// image of ZTF's size with finite pixels, and draws with the stretch
// spreading its pixels over the grey range.
func TestReadRealStamps(t *testing.T) {
	for i, b := range realStamps(t) {
		s, err := ReadStamp(b)
		if err != nil {
			t.Fatalf("stamp %d: %v", i, err)
		}
		// 63x63, or less at a CCD's edge.
		if s.Width < 16 || s.Width > 64 || s.Height < 16 || s.Height > 64 || max(s.Width, s.Height) < 63 {
			t.Errorf("stamp %d: %dx%d", i, s.Width, s.Height)
		}
		finite := 0
		for _, v := range s.Pix {
			if !math.IsNaN(v) {
				finite++
			}
		}
		if finite < len(s.Pix)/2 {
			t.Errorf("stamp %d: %d of %d pixels finite", i, finite, len(s.Pix))
		}
		img := s.Render(CutoutScale)
		if img.Bounds().Dx() != s.Width*CutoutScale {
			t.Fatalf("stamp %d drawn %v", i, img.Bounds())
		}
		var lo, hi uint8 = 255, 0
		for _, g := range img.Pix {
			lo, hi = min(lo, g), max(hi, g)
		}
		if hi-lo < 200 {
			t.Errorf("stamp %d drawn with greys %d to %d only", i, lo, hi)
		}
	}
}

// TestReadStampBitpix reads each BITPIX with BZERO and BSCALE, and refuses
// what is not an image.
func TestReadStampBitpix(t *testing.T) {
	for _, bitpix := range []int{8, 16, 32, 64, -32, -64} {
		var hdr bytes.Buffer
		card := func(s string) { hdr.WriteString(s + strings.Repeat(" ", 80-len(s))) }
		card("SIMPLE  =                    T")
		card("BITPIX  = " + strings.Repeat(" ", 20-len(itoa(bitpix))) + itoa(bitpix))
		card("NAXIS   =                    2")
		card("NAXIS1  =                    3")
		card("NAXIS2  =                    2")
		card("BZERO   =                   10 / offset")
		card("BSCALE  =                  0.5")
		card("END")
		for hdr.Len()%fitsBlock != 0 {
			hdr.WriteByte(' ')
		}
		for i := 0; i < 6; i++ {
			v := float64(i * 2)
			switch bitpix {
			case 8:
				hdr.WriteByte(byte(v))
			case 16:
				binary.Write(&hdr, binary.BigEndian, int16(v))
			case 32:
				binary.Write(&hdr, binary.BigEndian, int32(v))
			case 64:
				binary.Write(&hdr, binary.BigEndian, int64(v))
			case -32:
				binary.Write(&hdr, binary.BigEndian, float32(v))
			case -64:
				binary.Write(&hdr, binary.BigEndian, v)
			}
		}
		s, err := ReadStamp(hdr.Bytes())
		if err != nil {
			t.Fatalf("BITPIX %d: %v", bitpix, err)
		}
		if s.Width != 3 || s.Height != 2 || s.Pix[5] != 10+0.5*10 {
			t.Errorf("BITPIX %d: %dx%d, last pixel %v", bitpix, s.Width, s.Height, s.Pix[5])
		}
	}
	for _, bad := range [][]byte{nil, []byte("not fits"), bytes.Repeat([]byte(" "), 2880)} {
		if _, err := ReadStamp(bad); err == nil {
			t.Errorf("%q read as a stamp", bad[:min(len(bad), 10)])
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// FuzzReadStamp: no cutout makes the reader panic or allocate past its
// bounds.
func FuzzReadStamp(f *testing.F) {
	for _, b := range realStamps(f)[:3] {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ReadStamp(b); err == nil {
			s.Render(1)
		}
	})
}
