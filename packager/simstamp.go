package packager

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"strconv"

	"github.com/klauspost/compress/flate"
)

// A stampRenderer makes the simulation's cutouts: three per alert, each its
// own, at about 5 us a stamp where deflating a whole 63x63 float image costs
// 35-150 us (30,000 stamps make a 10,000-alert exposure).
//
// A gzip member's deflate stream may be cut into blocks that each end on a
// byte boundary (a flush), and a block compressed on its own needs nothing
// that came before it. So the parts of a stamp that do not depend on the
// alert are deflated once, at start, into pools of blocks: the header cards
// around CRVAL, 26 rows of sky and noise above and 26 below the centre, the
// zero padding. A stamp is then the gzip header, those blocks picked by the
// alert's random number, and two stored (uncompressed) blocks written for it:
// the CRVAL cards, centred on the alert, and the 11 centre rows, where the
// PSF of its source is added to noise read from a table at a random offset.
// Only the CRC-32 in the trailer is computed over the whole image.
//
//	uncompressed: | header: 720 B | CRVAL1,2 160 B | 2000 B | rows 0-25 | rows 26-36 | rows 37-62 | pad 1404 B |
//	deflate:      |  pooled      |  stored         | pooled | pooled    | stored     | pooled     | pooled     | final
type stampRenderer struct {
	z     []float32 // standard normal deviates, read at random offsets
	kinds [3]stampKind
	padZ  []byte
	pad   []byte
}

// stampKind is one of the three images of a cutout triplet.
type stampKind struct {
	name              string
	bg, noise         float64
	hdrPre, hdrPost   []byte // header before and after the CRVAL cards
	hdrPreZ, hdrPostZ []byte // the same, deflated
	preCRC            uint32 // CRC-32 of hdrPre
	top, bottom       [][]byte
	topZ, bottomZ     [][]byte
}

const (
	stampRow       = stampSize * 4
	stampCentre    = 26 // first row written per alert
	stampCentreEnd = 37 // first row after them
	stampPool      = 32 // pooled blocks above and below the centre, per kind
	stampDataLen   = (stampSize*stampRow + fitsBlock - 1) / fitsBlock * fitsBlock
	stampZTable    = 1 << 15
)

// Stamp kinds, in the order of Detection's cutouts.
const (
	stampSci = iota
	stampRef
	stampDiff
)

func newStampRenderer(seed uint64) *stampRenderer {
	rng := rand.New(rand.NewPCG(seed, 0xf175))
	r := &stampRenderer{z: make([]float32, stampZTable+stampSize*stampSize)}
	for i := range r.z {
		r.z[i] = float32(rng.NormFloat64())
	}
	// Sky and noise per kind [DN]: a 30 s science frame, a template
	// co-added from ~20 frames, and their difference.
	specs := [3]struct {
		name      string
		bg, noise float64
	}{{"sci", 180, 11}, {"ref", 180, 3}, {"diff", 0, 12}}
	r.pad = make([]byte, stampDataLen-stampSize*stampRow)
	// Each block is compressed on its own, ends on a byte boundary (a sync
	// flush) and is not final, so that blocks can be strung together.
	fw, _ := flate.NewWriter(nil, flate.DefaultCompression)
	deflateBlock := func(b []byte) []byte {
		var out bytes.Buffer
		fw.Reset(&out)
		fw.Write(b)
		fw.Flush()
		return out.Bytes()
	}
	r.padZ = deflateBlock(r.pad)
	for k, s := range specs {
		kd := &r.kinds[k]
		kd.name, kd.bg, kd.noise = s.name, s.bg, s.noise
		hdr := stampHeader(s.name, 0, 0)
		kd.hdrPre, kd.hdrPost = hdr[:stampCRVAL], hdr[stampCRVAL+160:]
		kd.hdrPreZ, kd.hdrPostZ = deflateBlock(kd.hdrPre), deflateBlock(kd.hdrPost)
		kd.preCRC = crc32.ChecksumIEEE(kd.hdrPre)
		rows := func(n int) []byte {
			b := make([]byte, 0, n*stampRow)
			for range n * stampSize {
				v := quantize(s.bg + s.noise*rng.NormFloat64())
				b = binary.BigEndian.AppendUint32(b, math.Float32bits(float32(v)))
			}
			return b
		}
		for range stampPool {
			t, b := rows(stampCentre), rows(stampSize-stampCentreEnd)
			kd.top, kd.topZ = append(kd.top, t), append(kd.topZ, deflateBlock(t))
			kd.bottom, kd.bottomZ = append(kd.bottom, b), append(kd.bottomZ, deflateBlock(b))
		}
	}
	return r
}

// quantize rounds a pixel to 1/128 DN, a 400th of the noise of the
// quietest image: the low bits of the mantissa are then zero, so the pooled
// rows deflate to about ZTF's stamp size (~13 kB for a 63x63 float image)
// instead of not at all.
func quantize(v float64) float64 { return math.Round(v*128) / 128 }

// appendStored appends b as stored deflate blocks (at most 65,535 bytes each).
func appendStored(dst, b []byte) []byte {
	for len(b) > 0 {
		n := min(len(b), 0xffff)
		dst = append(dst, 0, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, b[:n]...)
		b = b[n:]
	}
	return dst
}

// stampSource is the point source of one stamp: total flux [DN] (negative
// in a difference image of a source that faded), FWHM and offset from the
// centre pixel [pixels].
type stampSource struct {
	flux, fwhm, dx, dy float64
}

// stampMax bounds the size of a rendered stamp.
func (r *stampRenderer) stampMax() int {
	n := 0
	for _, kd := range r.kinds {
		m := 0
		for i := range kd.topZ {
			m = max(m, len(kd.topZ[i])+len(kd.bottomZ[i]))
		}
		n = max(n, m+len(kd.hdrPreZ)+len(kd.hdrPostZ))
	}
	return n + len(r.padZ) + 10 + 2*5 + 160 + (stampCentreEnd-stampCentre)*stampRow + 5 + 8
}

// render appends one gzipped FITS stamp centred on ra, dec to out; pick
// (the alert's random number) chooses the pooled rows and the noise.
func (r *stampRenderer) render(out []byte, kind int, ra, dec float64, src stampSource, pick uint64) []byte {
	kd := &r.kinds[kind]
	top, bottom := int(pick%stampPool), int(pick/stampPool%stampPool)
	zoff := int(pick >> 10 % stampZTable)

	var cards [160]byte
	copy(cards[:], stampHeader80("CRVAL1", ra))
	copy(cards[80:], stampHeader80("CRVAL2", dec))

	var centre [(stampCentreEnd - stampCentre) * stampRow]byte
	sig := src.fwhm / 2.3548
	if sig <= 0 {
		sig = 1
	}
	norm := src.flux / (2 * math.Pi * sig * sig)
	c := float64(stampSize-1) / 2
	var gx [stampSize]float64
	for x := range gx {
		d := float64(x) - c - src.dx
		gx[x] = math.Exp(-d * d / (2 * sig * sig))
	}
	z := r.z[zoff:]
	i := 0
	for y := stampCentre; y < stampCentreEnd; y++ {
		d := float64(y) - c - src.dy
		gy := norm * math.Exp(-d*d/(2*sig*sig))
		for x := 0; x < stampSize; x++ {
			v := quantize(kd.bg + kd.noise*float64(z[i]) + gy*gx[x])
			binary.BigEndian.PutUint32(centre[i*4:], math.Float32bits(float32(v)))
			i++
		}
	}

	out = append(out, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff)
	out = append(out, kd.hdrPreZ...)
	out = appendStored(out, cards[:])
	out = append(out, kd.hdrPostZ...)
	out = append(out, kd.topZ[top]...)
	out = appendStored(out, centre[:])
	out = append(out, kd.bottomZ[bottom]...)
	out = append(out, r.padZ...)
	out = append(out, 1, 0, 0, 0xff, 0xff) // final, empty, stored

	crc := crc32.Update(kd.preCRC, crc32.IEEETable, cards[:])
	crc = crc32.Update(crc, crc32.IEEETable, kd.hdrPost)
	crc = crc32.Update(crc, crc32.IEEETable, kd.top[top])
	crc = crc32.Update(crc, crc32.IEEETable, centre[:])
	crc = crc32.Update(crc, crc32.IEEETable, kd.bottom[bottom])
	crc = crc32.Update(crc, crc32.IEEETable, r.pad)
	out = binary.LittleEndian.AppendUint32(out, crc)
	return binary.LittleEndian.AppendUint32(out, uint32(fitsBlock+stampDataLen))
}

// stampHeader80 is a CRVAL card exactly as stampHeader writes it.
func stampHeader80(key string, v float64) []byte {
	b := make([]byte, 0, 80)
	b = append(b, key...)
	for len(b) < 8 {
		b = append(b, ' ')
	}
	b = append(b, "= "...)
	val := strconv.AppendFloat(nil, v, 'f', 7, 64)
	for range 20 - len(val) {
		b = append(b, ' ')
	}
	b = append(b, val...)
	b = append(b, " / [deg]"...)
	for len(b) < 80 {
		b = append(b, ' ')
	}
	return b
}
