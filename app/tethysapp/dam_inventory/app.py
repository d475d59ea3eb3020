from tethys_sdk.app_settings import CustomSetting, PersistentStoreDatabaseSetting
from tethys_sdk.base import TethysAppBase
from tethys_sdk.permissions import Permission, PermissionGroup


class App(TethysAppBase):
    """Dam inventory: a map of dams with hydrographs and live new-dam notifications."""

    name = "Dam Inventory"
    description = "Dams on a map, their hydrographs, and live notifications of new dams."
    package = "dam_inventory"  # must match the tethysapp.<package> directory
    index = "home"
    icon = f"{package}/images/icon.gif"
    root_url = "dam-inventory"
    color = "#244C96"
    tags = "Hydrology,Dams"
    enable_feedback = False
    feedback_emails = []

    def custom_settings(self):
        return (
            CustomSetting(
                name="max_dams",
                type=CustomSetting.TYPE_INTEGER,
                description="Largest number of dams the inventory accepts (empty: no limit).",
                required=False,
            ),
            CustomSetting(
                name="base_map",
                type=CustomSetting.TYPE_STRING,
                description="The map's base layer: offline (served by the portal), osm "
                "(OpenStreetMap tiles over it), or an XYZ tile URL with {z}, {x} and {y}.",
                required=False,
                default="offline",
            ),
        )

    def persistent_store_settings(self):
        return (
            PersistentStoreDatabaseSetting(
                name="primary_db",
                description="Dams (PostGIS points, SRID 4326), hydrographs and deletions.",
                initializer="dam_inventory.model.init_primary_db",
                required=True,
                spatial=True,
            ),
        )

    def permissions(self):
        add_dams = Permission(name="add_dams", description="Add dams and assign hydrographs")
        delete_dams = Permission(name="delete_dams", description="Delete any dam")
        admin = PermissionGroup(name="admin", permissions=(add_dams, delete_dams))
        return (admin,)
