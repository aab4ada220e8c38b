"""Built-in data sources; importing this package registers them."""

from genrep.data.sources import digits  # noqa: F401
from genrep.data.sources import mnist  # noqa: F401
from genrep.data.sources import fashion_mnist  # noqa: F401
from genrep.data.sources import cifar  # noqa: F401
from genrep.data.sources import svhn  # noqa: F401
from genrep.data.sources import usps  # noqa: F401
from genrep.data.sources import omniglot  # noqa: F401
from genrep.data.sources import celeba  # noqa: F401
from genrep.data.sources import malaria  # noqa: F401
from genrep.data.sources import image_folder  # noqa: F401
from genrep.data.sources import npz  # noqa: F401
from genrep.data.sources import calorimeter  # noqa: F401
