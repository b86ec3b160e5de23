"""Deflated DICOM files: their inflation bounded before pydicom inflates them whole.

pydicom reads a Deflated Explicit VR Little Endian file by inflating its
whole dataset, pixels included, before any header can be checked: a small
file declaring a huge image would take the memory first. Here the inflation
runs in chunks that are counted and thrown away, and stops at a limit.
"""

import zlib

#: The transfer syntax whose dataset is deflated.
DEFLATED = "1.2.840.10008.1.2.1.99"
_META_START = 132  # the 128-byte preamble and "DICM"
_GROUP_LENGTH_ELEMENT = 12  # (0002,0000) UL, explicit VR: tag, VR, length and its 4-byte value
_CHUNK = 2**20


def check_inflated_size(path, meta, limit, *, limit_name):
    """Refuse a deflated DICOM file whose dataset inflates to more than ``limit`` bytes.

    Parameters
    ----------
    path : str or os.PathLike
    meta : pydicom.dataset.FileMetaDataset
        The file's meta information (``pydicom.filereader.read_file_meta_info``).
        Files of other transfer syntaxes pass unread.
    limit : int
        Bytes the dataset may inflate to.
    limit_name : str
        The setting that raises the limit, named in the error.

    Raises
    ------
    ValueError
        Naming the file, when the dataset inflates past ``limit``, or when
        the meta information lacks the group length that says where the
        deflated dataset starts.
    """
    if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
        return
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise ValueError(f"DICOM file {path!r} is deflated but its file meta information has no group length, "
                         "so where its deflated dataset starts cannot be known before inflating it.")
    inflate, inflated = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as f:
        f.seek(_META_START + _GROUP_LENGTH_ELEMENT + int(group_length))
        while chunk := f.read(_CHUNK):
            while chunk and not inflate.eof:
                inflated += len(inflate.decompress(chunk, 4 * _CHUNK))
                chunk = inflate.unconsumed_tail
                if inflated > limit:
                    raise ValueError(f"DICOM file {path!r} is deflated and inflates to more than {limit:,} bytes, "
                                     f"more than an image of the pixel limit takes (set {limit_name} to allow "
                                     "more).")
