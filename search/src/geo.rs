//! Distances on the Earth's surface and the grid that narrows "near me"
//! searches to a few posting lists before any coordinate is read.

use crate::GeoFilter;

/// Mean Earth radius (IUGG); the spherical model errs by under 0.5 %, far
/// less than how loosely anyone means "within 25 km".
const EARTH_RADIUS_KM: f64 = 6_371.008_8;

/// A quarter degree is about 28 km north–south, so a typical cinema radius
/// touches a handful of cells and each cell holds few theaters.
const CELL_DEGREES: f64 = 0.25;
const CELLS_PER_TURN: i64 = 1_440;

/// Past this many cells the posting-list union costs more than it saves; the
/// bounding box on the coordinate columns does the narrowing alone.
const MAX_CELLS: usize = 128;

/// Slack on the bounding box so rounding never drops a point the exact
/// distance check would keep.
const BOX_SLACK_DEGREES: f64 = 1e-9;

/// Great-circle distance in kilometres.
pub fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let d_phi = (lat2 - lat1).to_radians();
    let d_lambda = (lon2 - lon1).to_radians();
    let a = (d_phi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
}

fn row(lat: f64) -> i64 {
    // Float-to-int casts saturate, and NaN becomes 0, so no input panics.
    ((lat.clamp(-90.0, 90.0) + 90.0) / CELL_DEGREES).floor() as i64
}

fn column(lon: f64) -> i64 {
    ((lon + 180.0) / CELL_DEGREES).floor() as i64
}

fn cell_key(row: i64, column: i64) -> u64 {
    (row * CELLS_PER_TURN + column.rem_euclid(CELLS_PER_TURN)).unsigned_abs()
}

/// The grid cell a point falls in.
pub(crate) fn cell(lat: f64, lon: f64) -> u64 {
    cell_key(row(lat), column(lon))
}

/// A circle on the globe with its bounding box.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Area {
    lat: f64,
    lon: f64,
    radius_km: f64,
    min_lat: f64,
    max_lat: f64,
    /// Half the box's width in degrees; `None` when the circle reaches a pole
    /// and so spans every longitude.
    half_width: Option<f64>,
}

impl Area {
    /// `None` when no point can be inside: a negative or NaN radius, or a
    /// centre that is not on the globe.
    pub(crate) fn new(filter: &GeoFilter) -> Option<Self> {
        let GeoFilter {
            latitude: lat,
            longitude: lon,
            radius_km,
        } = *filter;
        if radius_km.is_nan()
            || radius_km < 0.0
            || !lon.is_finite()
            || !(-90.0..=90.0).contains(&lat)
        {
            return None;
        }
        // The box follows Matuschek's construction: the circle's angular
        // radius bounds latitude directly, and longitude by the meridians
        // tangent to the circle, unless a pole lies within reach.
        let angular = radius_km / EARTH_RADIUS_KM;
        let reach = angular.to_degrees();
        let (min_lat, max_lat) = (lat - reach, lat + reach);
        let half_width = if min_lat <= -90.0 || max_lat >= 90.0 {
            None
        } else {
            let width = (angular.sin() / lat.to_radians().cos()).asin().to_degrees();
            width.is_finite().then_some(width + BOX_SLACK_DEGREES)
        };
        Some(Self {
            lat,
            lon,
            radius_km,
            min_lat: min_lat.max(-90.0) - BOX_SLACK_DEGREES,
            max_lat: max_lat.min(90.0) + BOX_SLACK_DEGREES,
            half_width,
        })
    }

    /// Cheap rejection by the bounding box before the trigonometry.
    pub(crate) fn in_box(&self, lat: f64, lon: f64) -> bool {
        if !(self.min_lat..=self.max_lat).contains(&lat) {
            return false;
        }
        match self.half_width {
            None => true,
            Some(half_width) => {
                ((lon - self.lon + 540.0).rem_euclid(360.0) - 180.0).abs() <= half_width
            }
        }
    }

    /// Distance from the centre when the point lies within the radius.
    pub(crate) fn distance_if_within(&self, lat: f64, lon: f64) -> Option<f64> {
        let distance = haversine_km(self.lat, self.lon, lat, lon);
        (distance <= self.radius_km).then_some(distance)
    }

    /// Distance from the centre, inside the area or not.
    pub(crate) fn distance(&self, lat: f64, lon: f64) -> f64 {
        haversine_km(self.lat, self.lon, lat, lon)
    }

    /// Grid cells covering the bounding box, or `None` when there are too
    /// many for the grid to help.
    pub(crate) fn cells(&self) -> Option<Vec<u64>> {
        let half_width = self.half_width?;
        let (first_row, last_row) = (row(self.min_lat), row(self.max_lat));
        let (first_column, last_column) =
            (column(self.lon - half_width), column(self.lon + half_width));
        let rows = usize::try_from(last_row - first_row + 1).ok()?;
        let columns = usize::try_from(last_column - first_column + 1).ok()?;
        if columns >= CELLS_PER_TURN.unsigned_abs() as usize
            || rows.saturating_mul(columns) > MAX_CELLS
        {
            return None;
        }
        let mut cells = Vec::with_capacity(rows * columns);
        for row in first_row..=last_row {
            for column in first_column..=last_column {
                cells.push(cell_key(row, column));
            }
        }
        Some(cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(lat: f64, lon: f64, radius_km: f64) -> Area {
        Area::new(&GeoFilter {
            latitude: lat,
            longitude: lon,
            radius_km,
        })
        .expect("area")
    }

    #[test]
    fn boston_to_new_york_is_about_three_hundred_kilometres() {
        let distance = haversine_km(42.3601, -71.0589, 40.7128, -74.0060);
        assert!((distance - 306.1).abs() < 1.0, "{distance}");
    }

    #[test]
    fn every_point_within_the_radius_is_inside_the_box_and_its_cells() {
        let centre = area(42.36, -71.06, 25.0);
        let cells = centre.cells().expect("cells");
        for step in 0..360 {
            let bearing = f64::from(step).to_radians();
            let (lat, lon) = (
                42.36 + 0.22 * bearing.cos(),
                -71.06 + 0.22 * bearing.sin() / 42.36_f64.to_radians().cos(),
            );
            assert!(centre.distance_if_within(lat, lon).is_some());
            assert!(centre.in_box(lat, lon));
            assert!(cells.contains(&cell(lat, lon)));
        }
    }

    #[test]
    fn a_circle_over_the_antimeridian_wraps_around() {
        let centre = area(0.0, 179.9, 50.0);
        assert!(centre.in_box(0.0, -179.9));
        assert!(centre.cells().expect("cells").contains(&cell(0.0, -179.9)));
    }

    #[test]
    fn a_circle_around_a_pole_spans_every_longitude() {
        let centre = area(89.9, 0.0, 50.0);
        assert!(centre.in_box(89.8, 180.0));
        assert!(centre.cells().is_none());
    }

    #[test]
    fn a_nonsensical_radius_matches_nothing() {
        for radius_km in [-1.0, f64::NAN] {
            let filter = GeoFilter {
                latitude: 0.0,
                longitude: 0.0,
                radius_km,
            };
            assert!(Area::new(&filter).is_none());
        }
    }
}
