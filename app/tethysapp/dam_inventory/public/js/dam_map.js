/*
 * The app's map, drawn with OpenLayers directly rather than Tethys' MapView gizmo: the gizmo
 * is written for OpenLayers 6.12, which no package obtainable offline carries, and it cannot
 * place a point by one click or show a popup. Only API common to OpenLayers 6 and 10 is used,
 * so the map works with the self-hosted build and with the CDN's 6.12 alike.
 *
 * The base layer works with no internet: coastlines, countries and lakes (Natural Earth),
 * served by the stack as GeoJSON. Tiles (OpenStreetMap or an XYZ URL) are drawn over it only
 * when the operator configured them (data-tiles); where they do not load, the base shows.
 *
 * One map per page, in the element #dam-map, configured by its data- attributes:
 *   data-mode       "browse" (home: dams as markers, a popup on click) or "place" (Add Dam:
 *                   a click places the new dam and fills #longitude / #latitude)
 *   data-countries-url, data-lakes-url, data-tiles ("", "osm" or a {z}/{x}/{y} template)
 * It is published as window.damInventoryMap for the live client (dam_inventory.js).
 */
(function () {
  "use strict";

  var element = document.getElementById("dam-map");
  var ol = window.ol;
  if (!element || !ol) { return; }

  var START_CENTRE = [-98.6, 39.8];   // lon/lat: the contiguous United States
  var START_ZOOM = 3.5;
  var DAM_ZOOM = 10;
  var MAX_ZOOM = 18;
  var COORDINATE_DECIMALS = 5;         // about 1 m, as the dam table shows them
  var POPUP_MARGIN_PX = 20;
  var PAN_MS = 250;
  var OSM_TILES = "osm";
  var COLOURS = { land: "#f2efe9", border: "#b4aea4", water: "#aad3df", waterEdge: "#8ab8cc",
                  dam: "#244C96", placed: "#c0392b", halo: "#ffffff" };

  var mode = element.dataset.mode === "place" ? "place" : "browse";
  var geojson = new ol.format.GeoJSON();
  var selectHandlers = [];

  function fill(colour) { return new ol.style.Fill({ color: colour }); }
  function stroke(colour, width) { return new ol.style.Stroke({ color: colour, width: width }); }
  function marker(colour, radius) {
    return new ol.style.Style({
      image: new ol.style.Circle({ radius: radius, fill: fill(colour), stroke: stroke(COLOURS.halo, 2) })
    });
  }

  function baseLayer(url, style, name) {
    var source = new ol.source.Vector({ url: url, format: geojson,
                                        attributions: "Base map: Natural Earth (public domain)" });
    var layer = new ol.layer.Vector({ source: source, style: style, updateWhileInteracting: false });
    layer.set("name", name);
    return layer;
  }

  function tileLayer(tiles) {
    if (!tiles) { return null; }
    var source = tiles === OSM_TILES ? new ol.source.OSM() : new ol.source.XYZ({ url: tiles, crossOrigin: "anonymous" });
    var layer = new ol.layer.Tile({ source: source });
    layer.set("name", "tiles");
    return layer;
  }

  // ---- the map ---------------------------------------------------------------------------
  var dams = new ol.source.Vector();
  var damLayer = new ol.layer.Vector({ source: dams, style: marker(COLOURS.dam, 6) });
  damLayer.set("name", "dams");
  var layers = [
    baseLayer(element.dataset.countriesUrl, new ol.style.Style({ fill: fill(COLOURS.land), stroke: stroke(COLOURS.border, 0.8) }), "countries"),
    baseLayer(element.dataset.lakesUrl, new ol.style.Style({ fill: fill(COLOURS.water), stroke: stroke(COLOURS.waterEdge, 0.6) }), "lakes"),
    tileLayer(element.dataset.tiles),
    damLayer
  ].filter(Boolean);

  var map = new ol.Map({
    target: element,
    layers: layers,
    view: new ol.View({ center: ol.proj.fromLonLat(START_CENTRE), zoom: START_ZOOM, maxZoom: MAX_ZOOM })
  });

  function toMap(lon, lat) { return ol.proj.fromLonLat([lon, lat]); }
  function toLonLat(coordinate) { return ol.proj.toLonLat(coordinate); }

  // ---- browse: dams as markers, a popup on click ------------------------------------------
  var popup = null;

  function addDam(dam) {
    if (dams.getFeatureById(dam.id)) { return; }
    var feature = new ol.Feature({ geometry: new ol.geom.Point(toMap(dam.lon, dam.lat)) });
    feature.setId(dam.id);
    feature.set("dam", dam);
    dams.addFeature(feature);
  }

  function removeDam(id) {
    var feature = dams.getFeatureById(id);
    if (feature) { dams.removeFeature(feature); }
    if (popup && popup.get("damId") === id) { closePopup(); }
  }

  function centreOn(dam) {
    map.getView().animate({ center: toMap(dam.lon, dam.lat), zoom: Math.max(map.getView().getZoom(), DAM_ZOOM) });
  }

  // The popup's content is the page's own details panel (filled by dam_inventory.js).
  function showPopup(dam, content) {
    if (!popup) {
      popup = new ol.Overlay({ element: content, positioning: "bottom-center", offset: [0, -10],
                               stopEvent: true });
      map.addOverlay(popup);
    }
    popup.set("damId", dam.id);
    content.hidden = false;
    popup.setPosition(toMap(dam.lon, dam.lat));
    // Once drawn, its full size is known: move the map so the whole popup shows.
    window.requestAnimationFrame(function () {
      if (typeof popup.panIntoView === "function") { popup.panIntoView({ margin: POPUP_MARGIN_PX, animation: { duration: PAN_MS } }); }
    });
  }

  function closePopup() {
    if (popup) { popup.setPosition(undefined); popup.set("damId", null); }
  }

  function damAt(pixel) {
    var found = null;
    map.forEachFeatureAtPixel(pixel, function (feature) {
      found = feature.get("dam") || null;
      return Boolean(found);
    }, { layerFilter: function (layer) { return layer === damLayer; }, hitTolerance: 4 });
    return found;
  }

  if (mode === "browse") {
    map.on("singleclick", function (event) {
      var dam = damAt(event.pixel);
      if (!dam) { closePopup(); return; }
      selectHandlers.forEach(function (handler) { handler(dam); });
    });
    map.on("pointermove", function (event) {
      element.style.cursor = damAt(event.pixel) ? "pointer" : "";
    });
  }

  // ---- place: one click puts the new dam's point; typed coordinates move it ---------------
  var placed = null;
  var lonInput = document.getElementById("longitude");
  var latInput = document.getElementById("latitude");

  function place(lon, lat) {
    if (!placed) {
      placed = new ol.Feature({ geometry: new ol.geom.Point(toMap(lon, lat)) });
      placed.setStyle(marker(COLOURS.placed, 8));
      dams.addFeature(placed);
    } else {
      placed.getGeometry().setCoordinates(toMap(lon, lat));
    }
    element.dataset.placed = lon.toFixed(COORDINATE_DECIMALS) + "," + lat.toFixed(COORDINATE_DECIMALS);
  }

  function typedPoint() {
    var lon = parseFloat(lonInput.value), lat = parseFloat(latInput.value);
    if (isFinite(lon) && isFinite(lat) && Math.abs(lon) <= 180 && Math.abs(lat) <= 90) { place(lon, lat); }
  }

  if (mode === "place" && lonInput && latInput) {
    map.on("singleclick", function (event) {
      var lonLat = toLonLat(event.coordinate);
      var lon = ((lonLat[0] + 540) % 360) - 180;   // the world repeats sideways: back to -180..180
      lonInput.value = lon.toFixed(COORDINATE_DECIMALS);
      latInput.value = lonLat[1].toFixed(COORDINATE_DECIMALS);
      place(parseFloat(lonInput.value), parseFloat(latInput.value));
    });
    lonInput.addEventListener("change", typedPoint);
    latInput.addEventListener("change", typedPoint);
    typedPoint();  // a form sent back with errors keeps its point
  }

  window.damInventoryMap = {
    mode: mode,
    map: map,
    dams: dams,
    addDam: addDam,
    removeDam: removeDam,
    centreOn: centreOn,
    showPopup: showPopup,
    closePopup: closePopup,
    onSelect: function (handler) { selectHandlers.push(handler); }
  };
})();
