package timewindows

import (
	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// Site is a site's row in the sites table.
type Site struct {
	Name string `json:"name"`
}

// Named is a located reading with its site's name.
type Named struct {
	Located
	SiteName string `json:"site_name"`
}

// Name reads each located reading's site by the site's key, not the
// reading's: a Lookup, whose table every process keeps whole. A site the
// table lacks is named "unknown".
func Name(t *topology.Topology, located topology.Stream[Located], sites topology.Table[Site]) topology.Stream[Named] {
	named := topology.NewStream(t, "named", codecs.JSON[Named]{})
	p := t.Processor("name")
	site, out := topology.Lookup(p, sites), topology.Produce(p, named)
	topology.Consume(p, located, func(c *topology.Context, sensor string, r Located) error {
		s, ok, err := site.Get(c, r.Site)
		if err != nil {
			return err
		}
		if !ok {
			s.Name = "unknown"
		}
		return out.Emit(c, sensor, Named{Located: r, SiteName: s.Name})
	})
	return named
}
