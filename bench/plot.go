package bench

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// canvas is what the plots draw on: hand-written SVG, or an RGBA image
// with the bitmap font, so no plotting library is needed.
type canvas interface {
	rect(x, y, w, h float64, c color.RGBA)
	line(x1, y1, x2, y2 float64, c color.RGBA, dashed bool)
	text(x, y float64, s string, anchor int, c color.RGBA)
}

const (
	anchorStart = iota
	anchorMiddle
	anchorEnd
)

var (
	black   = color.RGBA{0x20, 0x20, 0x20, 0xff}
	grey    = color.RGBA{0xb0, 0xb0, 0xb0, 0xff}
	light   = color.RGBA{0xe8, 0xe8, 0xe8, 0xff}
	palette = []color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff},
		{0xd6, 0x27, 0x28, 0xff}, {0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff},
	}
	diskColor = color.RGBA{0x80, 0x00, 0x00, 0xff}
	loopColor = color.RGBA{0x00, 0x60, 0x80, 0xff}
)

// shade mixes c toward white: k=0 is c, k=1 white.
func shade(c color.RGBA, k float64) color.RGBA {
	m := func(v uint8) uint8 { return uint8(float64(v) + (255-float64(v))*k) }
	return color.RGBA{m(c.R), m(c.G), m(c.B), 0xff}
}

const plotW, plotH = 1280, 560

// WritePlot draws throughput per target and phase (with the machine limits)
// and latency percentiles per target and offered rate, as .svg or .png by
// the file name.
func (r *Report) WritePlot(path string) error {
	var c canvas
	var svg *svgCanvas
	var img *pngCanvas
	switch strings.ToLower(filepath.Ext(path)) {
	case ".svg":
		svg = &svgCanvas{}
		c = svg
	case ".png":
		img = newPNGCanvas(plotW, plotH)
		c = img
	default:
		return fmt.Errorf("bench: --plot %s: want a .png or .svg file", path)
	}
	c.rect(0, 0, plotW, plotH, color.RGBA{0xff, 0xff, 0xff, 0xff})
	c.text(plotW/2, 24, fmt.Sprintf("ztfbroker bench %s - %.0fs per phase, %d producers, %d partitions, %d CPUs",
		r.Started.Format("2006-01-02 15:04Z"), r.Duration, r.Producers, r.Partitions, r.CPUs), anchorMiddle, black)
	r.drawThroughput(c, 70, 70, 540, 360)
	r.drawLatency(c, 720, 70, 520, 360)
	// Legend: one colour per target.
	x := 70.0
	for i, t := range r.Targets {
		col := palette[i%len(palette)]
		c.rect(x, plotH-30, 14, 14, col)
		label := t.Name
		if t.Error != "" {
			label += " (failed)"
		}
		c.text(x+20, plotH-17, label, anchorStart, black)
		x += 30 + 8*float64(len(label)) + 30
	}
	if svg != nil {
		return os.WriteFile(path, svg.bytes(), 0o644)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img.img); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

type phaseKey struct {
	phase string
	size  int
}

func (r *Report) drawThroughput(c canvas, x0, y0, w, h float64) {
	c.text(x0, y0-16, "throughput, MB/s", anchorStart, black)
	var keys []phaseKey
	seen := map[phaseKey]bool{}
	top := 0.0
	for _, t := range r.Targets {
		for _, th := range t.Throughput {
			k := phaseKey{th.Phase, th.RecordBytes}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
			top = max(top, th.MBps)
		}
	}
	var disk, loop float64
	if r.Limits != nil {
		disk, loop = r.Limits.DiskSyncMBps, r.Limits.LoopbackMBps
	}
	// The disk limit is on the scale when it is near the bars; loopback is
	// usually far above and is written as text when off the scale.
	if disk > 0 && disk < 4*top {
		top = max(top, disk)
	}
	if loop > 0 && loop < 2*top {
		top = max(top, loop)
	}
	top = niceMax(top * 1.05)
	y := func(v float64) float64 { return y0 + h - v/top*h }
	for i := 0; i <= 5; i++ {
		v := top * float64(i) / 5
		c.line(x0, y(v), x0+w, y(v), light, false)
		c.text(x0-6, y(v)+4, fmt.Sprintf("%g", v), anchorEnd, black)
	}
	c.line(x0, y0, x0, y0+h, black, false)
	c.line(x0, y0+h, x0+w, y0+h, black, false)
	if len(keys) == 0 || len(r.Targets) == 0 {
		c.text(x0+w/2, y0+h/2, "no throughput figures", anchorMiddle, black)
		return
	}
	gw := w / float64(len(keys))
	bw := (gw - 20) / float64(len(r.Targets))
	for gi, k := range keys {
		gx := x0 + float64(gi)*gw + 10
		for ti, t := range r.Targets {
			for _, th := range t.Throughput {
				if th.Phase != k.phase || th.RecordBytes != k.size {
					continue
				}
				bx := gx + float64(ti)*bw
				c.rect(bx+1, y(th.MBps), bw-2, y0+h-y(th.MBps), palette[ti%len(palette)])
				c.text(bx+bw/2, y(th.MBps)-4, fmt.Sprintf("%.0f", th.MBps), anchorMiddle, black)
			}
		}
		c.text(gx+(gw-20)/2, y0+h+18, k.phase, anchorMiddle, black)
		c.text(gx+(gw-20)/2, y0+h+36, sizeLabel(k.size), anchorMiddle, black)
	}
	note := y0 + h + 56
	for _, lim := range []struct {
		name string
		v    float64
		col  color.RGBA
	}{{"disk write+fdatasync", disk, diskColor}, {"loopback TCP", loop, loopColor}} {
		if lim.v <= 0 {
			continue
		}
		if lim.v <= top {
			c.line(x0, y(lim.v), x0+w, y(lim.v), lim.col, true)
			c.text(x0+w-4, y(lim.v)-4, fmt.Sprintf("%s %.0f MB/s", lim.name, lim.v), anchorEnd, lim.col)
		} else {
			c.text(x0, note, fmt.Sprintf("%s %.0f MB/s (above the scale)", lim.name, lim.v), anchorStart, lim.col)
			note += 16
		}
	}
}

func sizeLabel(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%d kB", n/1000)
	}
	return fmt.Sprintf("%d B", n)
}

func (r *Report) drawLatency(c canvas, x0, y0, w, h float64) {
	c.text(x0, y0-16, "latency, ms, log scale: p50 p99 p99.9 max", anchorStart, black)
	var rates []float64
	lo, hi := math.Inf(1), 0.0
	for _, t := range r.Targets {
		for _, l := range t.Latency {
			found := false
			for _, q := range rates {
				found = found || q == l.OfferedMBps
			}
			if !found {
				rates = append(rates, l.OfferedMBps)
			}
			for _, v := range []float64{l.P50ms, l.Maxms} {
				if v > 0 {
					lo, hi = min(lo, v), max(hi, v)
				}
			}
		}
	}
	c.line(x0, y0, x0, y0+h, black, false)
	c.line(x0, y0+h, x0+w, y0+h, black, false)
	if len(rates) == 0 {
		c.text(x0+w/2, y0+h/2, "no latency figures", anchorMiddle, black)
		return
	}
	dlo := math.Floor(math.Log10(lo))
	dhi := math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	y := func(v float64) float64 {
		v = max(v, math.Pow(10, dlo))
		return y0 + h - (math.Log10(v)-dlo)/(dhi-dlo)*h
	}
	for d := dlo; d <= dhi; d++ {
		v := math.Pow(10, d)
		c.line(x0, y(v), x0+w, y(v), light, false)
		c.text(x0-6, y(v)+4, fmt.Sprintf("%g", v), anchorEnd, black)
	}
	gw := w / float64(len(rates))
	tw := (gw - 20) / float64(len(r.Targets))
	bw := tw / 4
	for gi, rate := range rates {
		gx := x0 + float64(gi)*gw + 10
		for ti, t := range r.Targets {
			for _, l := range t.Latency {
				if l.OfferedMBps != rate {
					continue
				}
				col := palette[ti%len(palette)]
				for pi, v := range []float64{l.P50ms, l.P99ms, l.P999ms, l.Maxms} {
					bx := gx + float64(ti)*tw + float64(pi)*bw
					c.rect(bx+1, y(v), bw-2, y0+h-y(v), shade(col, 0.55-0.18*float64(pi)))
				}
				c.text(gx+float64(ti)*tw+tw/2, y(l.Maxms)-4, fmt.Sprintf("p99 %.1f", l.P99ms), anchorMiddle, black)
			}
		}
		c.text(gx+(gw-20)/2, y0+h+18, fmt.Sprintf("%g MB/s offered", rate), anchorMiddle, black)
	}
}

// svgCanvas writes SVG by hand.
type svgCanvas struct{ b bytes.Buffer }

func hexColor(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func (s *svgCanvas) rect(x, y, w, h float64, c color.RGBA) {
	fmt.Fprintf(&s.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, max(w, 0), max(h, 0), hexColor(c))
}

func (s *svgCanvas) line(x1, y1, x2, y2 float64, c color.RGBA, dashed bool) {
	dash := ""
	if dashed {
		dash = ` stroke-dasharray="6,4" stroke-width="2"`
	}
	fmt.Fprintf(&s.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"%s/>`+"\n", x1, y1, x2, y2, hexColor(c), dash)
}

func (s *svgCanvas) text(x, y float64, str string, anchor int, c color.RGBA) {
	a := [...]string{"start", "middle", "end"}[anchor]
	var esc bytes.Buffer
	for _, r := range str {
		switch r {
		case '<':
			esc.WriteString("&lt;")
		case '>':
			esc.WriteString("&gt;")
		case '&':
			esc.WriteString("&amp;")
		default:
			esc.WriteRune(r)
		}
	}
	fmt.Fprintf(&s.b, `<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s">%s</text>`+"\n", x, y, a, hexColor(c), esc.String())
}

func (s *svgCanvas) bytes() []byte {
	var out bytes.Buffer
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="13">`+"\n", plotW, plotH, plotW, plotH)
	out.Write(s.b.Bytes())
	out.WriteString("</svg>\n")
	return out.Bytes()
}

// pngCanvas draws into an RGBA image; text uses the 5x7 font at twice its
// size.
type pngCanvas struct{ img *image.RGBA }

func newPNGCanvas(w, h int) *pngCanvas { return &pngCanvas{img: image.NewRGBA(image.Rect(0, 0, w, h))} }

func (p *pngCanvas) rect(x, y, w, h float64, c color.RGBA) {
	for j := int(math.Round(y)); j < int(math.Round(y+h)); j++ {
		for i := int(math.Round(x)); i < int(math.Round(x+w)); i++ {
			p.img.SetRGBA(i, j, c)
		}
	}
}

func (p *pngCanvas) line(x1, y1, x2, y2 float64, c color.RGBA, dashed bool) {
	n := int(math.Max(math.Abs(x2-x1), math.Abs(y2-y1))) + 1
	for k := 0; k <= n; k++ {
		if dashed && (k/6)%2 == 1 {
			continue
		}
		t := float64(k) / float64(n)
		x := int(math.Round(x1 + (x2-x1)*t))
		y := int(math.Round(y1 + (y2-y1)*t))
		p.img.SetRGBA(x, y, c)
		if dashed {
			p.img.SetRGBA(x, y+1, c)
		}
	}
}

const glyphScale = 2

func (p *pngCanvas) text(x, y float64, s string, anchor int, c color.RGBA) {
	adv := float64(6 * glyphScale)
	width := adv * float64(len([]rune(s)))
	switch anchor {
	case anchorMiddle:
		x -= width / 2
	case anchorEnd:
		x -= width
	}
	top := int(y) - 7*glyphScale + 1
	for i, r := range []rune(s) {
		g, ok := glyphs[unicode.ToUpper(r)]
		if !ok {
			continue
		}
		gx := int(x + float64(i)*adv)
		for row, line := range g {
			for col, px := range line {
				if px != '#' {
					continue
				}
				for dy := 0; dy < glyphScale; dy++ {
					for dx := 0; dx < glyphScale; dx++ {
						p.img.SetRGBA(gx+col*glyphScale+dx, top+row*glyphScale+dy, c)
					}
				}
			}
		}
	}
}
