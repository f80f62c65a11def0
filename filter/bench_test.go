package filter

import (
	"fmt"
	"testing"
)

// benchFilters are 100 filters of the kinds users write: thresholds on
// the candidate, history helpers, cone searches, comprehensions over the
// history, each with its own numbers.
func benchFilters() []string {
	out := make([]string, 0, 100)
	for i := 0; i < 20; i++ {
		f := float64(i)
		out = append(out,
			fmt.Sprintf("candidate.rb > %.2f && candidate.magpsf < %.2f && candidate.isdiffpos in ['t', '1'] && size(prv_candidates) >= 2", 0.3+f/50, 17.0+f/10),
			fmt.Sprintf("ndet() >= %d && days_since_first() < %.1f && !has(candidate.ssnamenr)", 2+i%5, 5.0+f),
			fmt.Sprintf("cone(%.1f, %.1f, %.1f)", f*18, -30+f*4, 3600.0*(1+f/4)),
			fmt.Sprintf("mag_rate() < %.3f && candidate.fid == %d", -0.01*(1+f/5), 1+i%2),
			fmt.Sprintf("prv_candidates.exists(p, has(p.magpsf) && p.magpsf - candidate.magpsf > %.2f) && candidate.distpsnr1 > %.1f", 0.2+f/20, f/4),
		)
	}
	return out
}

// BenchmarkFilters100 is one core's work per alert with 100 filters:
// decoding the alert (cutouts stepped over) and evaluating every filter.
func BenchmarkFilters100(b *testing.B) {
	c, err := NewCompiler(0)
	if err != nil {
		b.Fatal(err)
	}
	var exprs []*Expression
	for _, text := range benchFilters() {
		e, err := c.Compile(text)
		if err != nil {
			b.Fatalf("%s: %v", text, err)
		}
		exprs = append(exprs, e)
	}
	d := NewDecoder()
	var values [][]byte
	for _, v := range samples(b) {
		var a Alert
		if d.Decode(v, Parts{History: true}, &a) == nil {
			values = append(values, v)
		}
	}
	var a Alert
	matches := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := values[i%len(values)]
		b.SetBytes(int64(len(v)))
		if err := d.Decode(v, Parts{History: true}, &a); err != nil {
			b.Fatal(err)
		}
		for _, e := range exprs {
			if m, err := e.Eval(&a); err == nil && m {
				matches++
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
	b.ReportMetric(float64(matches)/float64(b.N), "matches/alert")
}

// BenchmarkDecode is the decoding alone, of each set of parts.
func BenchmarkDecode(b *testing.B) {
	d := NewDecoder()
	var values [][]byte
	for _, v := range samples(b) {
		var a Alert
		if d.Decode(v, Parts{History: true}, &a) == nil {
			values = append(values, v)
		}
	}
	for _, tc := range []struct {
		name  string
		parts Parts
	}{{"candidate", Parts{}}, {"history", Parts{History: true}}, {"forced", Parts{History: true, Forced: true}},
		{"whole", Parts{true, true, true}}} {
		b.Run(tc.name, func(b *testing.B) {
			var a Alert
			for i := 0; i < b.N; i++ {
				if err := d.Decode(values[i%len(values)], tc.parts, &a); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
		})
	}
}
