package packager

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/klauspost/compress/gzip"
	"io"
	"math"
	"math/rand/v2"
	"strings"
)

// FITS stamps, as ZTF cuts them: a 63x63 single-precision image in the
// primary HDU, the header in 80-character cards padded to a 2880-byte
// block, the data big-endian and padded to a 2880-byte block, all gzipped.

const (
	fitsBlock = 2880
	stampSize = 63
)

// StampSpec describes a synthetic cutout.
type StampSpec struct {
	RA, Dec    float64
	Background float64 // sky level [DN]
	Noise      float64 // sigma per pixel [DN]
	Flux       float64 // total flux of the point source [DN]
	FWHM       float64 // [pixels]
	DX, DY     float64 // source offset from the centre [pixels]
	Seed       uint64
	Kind       string // "sci", "ref" or "diff"
}

// MakeStamp renders a gzipped FITS cutout: Gaussian PSF, sky and noise.
// It renders every pixel and deflates the whole image; the simulation uses
// a stampRenderer, which is about ten times faster.
func MakeStamp(s StampSpec) []byte {
	hdr := stampHeader(s.Kind, s.RA, s.Dec)
	rng := rand.New(rand.NewPCG(s.Seed, 0x5eed))
	data := make([]byte, 0, fitsBlock*6)
	sig := s.FWHM / 2.3548
	if sig <= 0 {
		sig = 1
	}
	norm := s.Flux / (2 * math.Pi * sig * sig)
	c := float64(stampSize-1) / 2
	for y := 0; y < stampSize; y++ {
		for x := 0; x < stampSize; x++ {
			dx, dy := float64(x)-c-s.DX, float64(y)-c-s.DY
			v := s.Background + norm*math.Exp(-(dx*dx+dy*dy)/(2*sig*sig)) + rng.NormFloat64()*s.Noise
			data = binary.BigEndian.AppendUint32(data, math.Float32bits(float32(v)))
		}
	}
	for len(data)%fitsBlock != 0 {
		data = append(data, 0)
	}
	var out bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&out, gzip.DefaultCompression)
	zw.Write(hdr)
	zw.Write(data)
	zw.Close()
	return out.Bytes()
}

// stampHeader is the primary header of a cutout: a TAN projection centred
// (CRPIX 32, 32) on ra, dec. The CRVAL cards come at a fixed place
// (stampCRVAL) so that a stampRenderer can write them alone.
func stampHeader(kind string, ra, dec float64) []byte {
	var hdr bytes.Buffer
	card := func(key string, value string, comment string) {
		c := fmt.Sprintf("%-8s= %20s", key, value)
		if comment != "" {
			c += " / " + comment
		}
		fmt.Fprintf(&hdr, "%-80.80s", c)
	}
	card("SIMPLE", "T", "conforms to FITS standard")
	card("BITPIX", "-32", "array data type")
	card("NAXIS", "2", "number of array dimensions")
	card("NAXIS1", "63", "")
	card("NAXIS2", "63", "")
	card("CTYPE1", "'RA---TAN'", "")
	card("CTYPE2", "'DEC--TAN'", "")
	card("CRPIX1", "32.0", "")
	card("CRPIX2", "32.0", "")
	card("CRVAL1", fmt.Sprintf("%.7f", ra), "[deg]")
	card("CRVAL2", fmt.Sprintf("%.7f", dec), "[deg]")
	card("CD1_1", "-0.000281", "1.01 arcsec/pixel")
	card("CD2_2", "0.000281", "")
	card("EXPTIME", "30.0", "[s]")
	card("IMGTYPE", "'"+kind+"'", "ztfbroker simulation")
	fmt.Fprintf(&hdr, "%-80s", "END")
	for hdr.Len()%fitsBlock != 0 {
		hdr.WriteByte(' ')
	}
	return hdr.Bytes()
}

// stampCRVAL is the offset of the CRVAL1 card in stampHeader; CRVAL2 follows.
const stampCRVAL = 9 * 80

// ErrNotFITS is wrapped by CheckStamp's errors.
var ErrNotFITS = errors.New("not a gzipped FITS image")

// CheckStamp verifies that b is a gzipped FITS file: gzip, a primary header
// of 2880-byte blocks starting SIMPLE = T and ending END, and, by the gzip
// trailer's size field, as many data bytes as BITPIX and NAXISn ask for.
// Only the header is inflated: checking a night's cutouts must stay cheap.
func CheckStamp(b []byte) error {
	if len(b) < 18 {
		return fmt.Errorf("%w: %d bytes", ErrNotFITS, len(b))
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotFITS, err)
	}
	// Headers of a cutout are one or two blocks; read up to 8 for an END.
	raw := make([]byte, 0, fitsBlock)
	for len(raw) < 8*fitsBlock && !bytes.Contains(raw, []byte("END"+strings.Repeat(" ", 77))) {
		blk := make([]byte, fitsBlock)
		if _, err := io.ReadFull(zr, blk); err != nil {
			return fmt.Errorf("%w: header: %v", ErrNotFITS, err)
		}
		raw = append(raw, blk...)
	}
	isize := int(binary.LittleEndian.Uint32(b[len(b)-4:]))
	if !strings.HasPrefix(string(raw), "SIMPLE  =") {
		return fmt.Errorf("%w: no SIMPLE card", ErrNotFITS)
	}
	bitpix, naxis := 0, -1
	dims := map[int]int{}
	end := -1
	for off := 0; off+80 <= len(raw); off += 80 {
		c := string(raw[off : off+80])
		key := strings.TrimSpace(c[:8])
		if key == "END" {
			end = off + 80
			break
		}
		if len(c) < 10 || c[8:10] != "= " {
			continue
		}
		val := strings.TrimSpace(strings.SplitN(c[10:], "/", 2)[0])
		var n int
		if _, err := fmt.Sscanf(val, "%d", &n); err != nil {
			continue
		}
		switch {
		case key == "BITPIX":
			bitpix = n
		case key == "NAXIS":
			naxis = n
		case strings.HasPrefix(key, "NAXIS"):
			var i int
			if _, err := fmt.Sscanf(key, "NAXIS%d", &i); err == nil {
				dims[i] = n
			}
		}
	}
	if end < 0 {
		return fmt.Errorf("%w: no END card", ErrNotFITS)
	}
	switch bitpix {
	case 8, 16, 32, 64, -32, -64:
	default:
		return fmt.Errorf("%w: BITPIX %d", ErrNotFITS, bitpix)
	}
	if naxis < 0 {
		return fmt.Errorf("%w: no NAXIS", ErrNotFITS)
	}
	hdrLen := (end + fitsBlock - 1) / fitsBlock * fitsBlock
	size := 0
	if naxis > 0 {
		size = abs(bitpix) / 8
		for i := 1; i <= naxis; i++ {
			size *= dims[i]
		}
	}
	if isize < hdrLen+size {
		return fmt.Errorf("%w: %d data bytes, header asks for %d", ErrNotFITS, isize-hdrLen, size)
	}
	return nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
