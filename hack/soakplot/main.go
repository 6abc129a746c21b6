// Command soakplot draws a soak's figures over time (make soak writes them to
// bin/soak/soak.json): the leading manager's RSS and goroutines and the vault's pulls per
// refresh interval, one panel each, the faults marked. A development tool.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"log"
	"os"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// report is the part of the soak's report drawn here.
type report struct {
	Duration string `json:"duration"`
	Started  time.Time
	Faults   []struct {
		What       string
		Start, End time.Time
	}
	Samples []struct {
		T          float64 `json:"t"`
		RSSMiB     float64 `json:"rssMiB"`
		Goroutines float64 `json:"goroutines"`
		Pulls      int     `json:"pulls"`
	}
	Environments int `json:"environments"`
}

func main() {
	in := flag.String("in", "bin/soak/soak.json", "the soak's report")
	out := flag.String("out", "bin/soak/soak.png", "the PNG to write")
	interval := flag.Duration("interval", 30*time.Second, "the bindings' refresh interval (pulls are summed over it)")
	flag.Parse()
	if err := run(*in, *out, *interval); err != nil {
		log.Fatalf("soakplot: %v", err)
	}
}

func run(in, out string, interval time.Duration) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var r report
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	end := 0.0
	if n := len(r.Samples); n > 0 {
		end = r.Samples[n-1].T / 60
	}
	var rss, gor, pulls plotter.XYs
	for _, s := range r.Samples {
		m := s.T / 60
		if s.RSSMiB > 0 { // 0: the leader's metrics could not be read (an outage)
			rss = append(rss, plotter.XY{X: m, Y: s.RSSMiB})
			gor = append(gor, plotter.XY{X: m, Y: s.Goroutines})
		}
	}
	// Pulls per refresh interval: the sum over a sliding window of samples 10 s apart.
	per := max(int(interval/(10*time.Second)), 1)
	for i := per; i < len(r.Samples); i++ {
		p := 0
		for _, s := range r.Samples[i-per+1 : i+1] {
			p += s.Pulls
		}
		pulls = append(pulls, plotter.XY{X: r.Samples[i].T / 60, Y: float64(p)})
	}
	panels := []struct {
		title, y string
		xys      plotter.XYs
		ref      float64
	}{
		{"Leading manager's RSS (red lines: faults)", "MiB", rss, 0},
		{"Leading manager's goroutines", "goroutines", gor, 0},
		{fmt.Sprintf("Vault pulls per %v (dashed: %d environments)", interval, r.Environments), "pulls", pulls, float64(r.Environments)},
	}
	const w, h = 9 * vg.Inch, 3 * vg.Inch
	img := vgimg.New(w, h*vg.Length(len(panels)))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadY: vg.Millimeter * 2, PadX: vg.Millimeter * 2}
	plots := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		pl := plot.New()
		pl.Title.Text = p.title
		pl.X.Label.Text = fmt.Sprintf("minutes (soak of %s)", r.Duration)
		pl.Y.Label.Text = p.y
		pl.Y.Min = 0
		pl.X.Min, pl.X.Max = 0, end
		line, err := plotter.NewLine(p.xys)
		if err != nil {
			return err
		}
		line.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
		pl.Add(line, plotter.NewGrid())
		top := 0.0
		for _, xy := range p.xys {
			top = max(top, xy.Y)
		}
		top = max(top, p.ref) * 1.15
		pl.Y.Max = top
		for _, f := range r.Faults {
			x := f.Start.Sub(r.Started).Minutes()
			mark, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: top}})
			if err != nil {
				return err
			}
			mark.Color = color.RGBA{R: 240, G: 160, B: 160, A: 255}
			pl.Add(mark)
		}
		if p.ref > 0 && len(p.xys) > 0 {
			ref, err := plotter.NewLine(plotter.XYs{{X: p.xys[0].X, Y: p.ref}, {X: p.xys[len(p.xys)-1].X, Y: p.ref}})
			if err != nil {
				return err
			}
			ref.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
			pl.Add(ref)
		}
		plots[i] = []*plot.Plot{pl}
	}
	canvases := plot.Align(plots, tiles, dc)
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
