"""Policies, one module each. Importing this package registers them."""

import policies.clipper_plus as _clipper_plus  # noqa: F401
import policies.hpa as _hpa  # noqa: F401
import policies.infaas as _infaas  # noqa: F401
import policies.infaas_ilp as _infaas_ilp  # noqa: F401
import policies.infadapter as _infadapter  # noqa: F401
import policies.ipa as _ipa  # noqa: F401
import policies.sagemaker_plus as _sagemaker_plus  # noqa: F401
import policies.themis as _themis  # noqa: F401
import policies.vpa as _vpa  # noqa: F401
from policies import static  # noqa: F401
