"""CT-slice datasets: the shipped sample, image folders, and fetchers for public sets."""

from ._base import get_data_home
from ._covid_ct import fetch_covid_ct
from ._dicom import load_dicom_folder
from ._folder import load_image_folder
from ._sample import load_sample_ct
from ._sarscov2 import fetch_sarscov2_ct

__all__ = ["fetch_covid_ct", "fetch_sarscov2_ct", "get_data_home", "load_dicom_folder", "load_image_folder",
           "load_sample_ct"]
