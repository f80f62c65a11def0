package portal

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
)

// A cutout is a gzipped FITS file (ZTF's stamps: 63x63 pixels, BITPIX -32)
// of which only the primary HDU's image is read:
//
//	+--------------------------------------------+
//	| header: 80-character cards "KEY = value",  |
//	| ending with END, padded to 2880 bytes      |
//	+--------------------------------------------+
//	| data: NAXIS1 x NAXIS2 big-endian values of |
//	| BITPIX bits (8, 16, 32, 64, -32, -64),     |
//	| row by row from the bottom, physical value |
//	| = BZERO + BSCALE x stored                  |
//	+--------------------------------------------+

const (
	fitsBlock = 2880
	fitsCard  = 80
	// maxStampSide bounds a cutout's side: ZTF's are 63, some 64.
	maxStampSide = 1024
	// maxHeaderBlocks bounds the header read (36 cards a block).
	maxHeaderBlocks = 64
)

// ErrNotFITS is returned for a cutout that is not a readable FITS image.
var ErrNotFITS = errors.New("portal: not a FITS image")

// Stamp is a cutout's pixels, row 0 at the bottom as FITS stores them.
type Stamp struct {
	Width, Height int
	Pix           []float64 // NaN for blank pixels
}

// ReadStamp reads the primary image of a gzipped (or plain) FITS file.
func ReadStamp(b []byte) (*Stamp, error) {
	var r io.Reader = bytes.NewReader(b)
	if len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotFITS, err)
		}
		r = zr
	}
	// The largest image allowed, and its header, bound what is inflated.
	r = io.LimitReader(r, maxHeaderBlocks*fitsBlock+maxStampSide*maxStampSide*8+fitsBlock)
	cards := map[string]string{}
	block := make([]byte, fitsBlock)
	ended := false
	for n := 0; n < maxHeaderBlocks && !ended; n++ {
		if _, err := io.ReadFull(r, block); err != nil {
			return nil, fmt.Errorf("%w: header: %w", ErrNotFITS, err)
		}
		for c := 0; c < fitsBlock; c += fitsCard {
			card := string(block[c : c+fitsCard])
			key := strings.TrimSpace(card[:8])
			if n == 0 && c == 0 && key != "SIMPLE" {
				return nil, fmt.Errorf("%w: first card is %q, not SIMPLE", ErrNotFITS, key)
			}
			if key == "END" {
				ended = true
				break
			}
			if card[8:10] == "= " {
				v := card[10:]
				if i := strings.Index(v, "/"); i >= 0 && !strings.HasPrefix(strings.TrimSpace(v), "'") {
					v = v[:i]
				}
				cards[key] = strings.TrimSpace(v)
			}
		}
	}
	if !ended {
		return nil, fmt.Errorf("%w: no END card in %d header blocks", ErrNotFITS, maxHeaderBlocks)
	}
	num := func(k string, def float64) (float64, error) {
		v, ok := cards[k]
		if !ok {
			return def, nil
		}
		f, err := strconv.ParseFloat(strings.Replace(v, "D", "E", 1), 64)
		if err != nil {
			return 0, fmt.Errorf("%w: %s = %q", ErrNotFITS, k, v)
		}
		return f, nil
	}
	bitpix, err := num("BITPIX", 0)
	if err != nil {
		return nil, err
	}
	naxis, _ := num("NAXIS", 0)
	w, err1 := num("NAXIS1", 0)
	h, err2 := num("NAXIS2", 1)
	bzero, err3 := num("BZERO", 0)
	bscale, err4 := num("BSCALE", 1)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return nil, err
	}
	if naxis < 1 || naxis > 3 || w < 1 || h < 1 || w > maxStampSide || h > maxStampSide {
		return nil, fmt.Errorf("%w: NAXIS %v of %vx%v (at most %d a side)", ErrNotFITS, naxis, w, h, maxStampSide)
	}
	size := 0
	switch bitpix {
	case 8:
		size = 1
	case 16:
		size = 2
	case 32, -32:
		size = 4
	case 64, -64:
		size = 8
	default:
		return nil, fmt.Errorf("%w: BITPIX %v", ErrNotFITS, bitpix)
	}
	s := &Stamp{Width: int(w), Height: int(h), Pix: make([]float64, int(w)*int(h))}
	data := make([]byte, len(s.Pix)*size)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("%w: data of %d bytes: %w", ErrNotFITS, len(data), err)
	}
	be := binary.BigEndian
	for i := range s.Pix {
		d := data[i*size:]
		var v float64
		switch bitpix {
		case 8:
			v = float64(d[0])
		case 16:
			v = float64(int16(be.Uint16(d)))
		case 32:
			v = float64(int32(be.Uint32(d)))
		case 64:
			v = float64(int64(be.Uint64(d)))
		case -32:
			v = float64(math.Float32frombits(be.Uint32(d)))
		case -64:
			v = math.Float64frombits(be.Uint64(d))
		}
		s.Pix[i] = bzero + bscale*v
	}
	return s, nil
}

// Render draws the stamp as an 8-bit grey image, top row first (north
// up), magnified scale times, with an asinh stretch between the 0.5 and
// 99.5 percentiles (the faint wings of a source and its bright core both
// stay visible, as astronomers' viewers show a stamp). Blank pixels are
// black.
func (s *Stamp) Render(scale int) *image.Gray {
	finite := make([]float64, 0, len(s.Pix))
	for _, v := range s.Pix {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			finite = append(finite, v)
		}
	}
	img := image.NewGray(image.Rect(0, 0, s.Width*scale, s.Height*scale))
	if len(finite) == 0 {
		return img
	}
	slices.Sort(finite)
	lo := finite[len(finite)*5/1000]
	hi := finite[min(len(finite)-1, len(finite)*995/1000)]
	if hi <= lo {
		hi = lo + 1
	}
	const soft = 0.1 // asinh softening: the linear part's share of the range
	norm := math.Asinh(1 / soft)
	for y := 0; y < s.Height; y++ {
		for x := 0; x < s.Width; x++ {
			v := s.Pix[y*s.Width+x]
			var g uint8
			if !math.IsNaN(v) {
				t := math.Max(0, math.Min(1, (v-lo)/(hi-lo)))
				g = uint8(math.Round(255 * math.Asinh(t/soft) / norm))
			}
			row := s.Height - 1 - y
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray(x*scale+dx, row*scale+dy, color.Gray{Y: g})
				}
			}
		}
	}
	return img
}
