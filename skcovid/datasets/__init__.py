"""CT-slice datasets: the shipped sample, image folders, and fetchers for public sets."""

from skcovid.datasets._base import get_data_home
from skcovid.datasets._covid_ct import fetch_covid_ct, load_covid_ct
from skcovid.datasets._dicom import load_dicom_folder
from skcovid.datasets._folder import load_image_folder
from skcovid.datasets._sample import load_sample_ct
from skcovid.datasets._sarscov2 import fetch_sarscov2_ct
from skcovid.datasets._sources import load_class_folder, load_sources

__all__ = ["fetch_covid_ct", "fetch_sarscov2_ct", "get_data_home", "load_covid_ct", "load_dicom_folder",
           "load_class_folder",
           "load_image_folder", "load_sample_ct", "load_sources"]
